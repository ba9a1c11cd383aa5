"""How personal are a trained HyMiRec's interests? Prints numbers, asserts nothing.

    python -m recbole_hymirec.tools.interest_report saved/HyMiRec-....pth [--rows 256] [--k 10]

Reads a checkpoint, runs the first ``--rows`` valid rows and prints one line ``INTERESTS {json}``:

* ``cross_user_cos``: for each interest query, the mean cosine between the interests it gives
  different users (near 1 = the query ignores the user: a collapsed interest);
* ``within_user_cos``: mean cosine between a user's own K interests (near 1 = one interest K
  times);
* ``swapped_history_cos``: mean cosine between a user's interests and those computed from
  another user's history (the row's own history shuffled across the batch): how much the
  history moves the interests;
* ``logit_std``: per-user standard deviation over the items of the ranking logit
  ``scale · cos`` (the dot product with ``similarity: dot``; small = a flat softmax), with
  ``logit_scale`` and ``item_bias_std``;
* ``distinct_topk_items``: distinct items in the rows' top-k lists;
* ``seen_share_topk``: the share of those top-k slots that hold an item the user has already
  interacted with (the model's own ranking, before any ``mask_seen_items`` of the protocol).

On a dataset with planted interests (``<dataset>.interests`` beside the atomic files, written by
``recbole_hymirec.data.synthetic``), ``planted`` tells which planted topic each interest follows,
from the topics of the top-k items each interest retrieves on its own (see
``planted_topic_report``).
"""
import argparse
import json
import os
import sys

import torch
from recbole.data.interaction import Interaction, cat_interactions
from torch.nn.functional import normalize

from recbole_hymirec.cli import run_report_command
from recbole_hymirec.data.dataset import TARGET_POSITION_FIELD
from recbole_hymirec.data.transform import HISTORY_FIELDS
from recbole_hymirec.model.retrieval import max_over_interests


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a HyMiRec checkpoint written by a training run")
    parser.add_argument("--rows", type=int, default=256, help="valid rows to read (default: 256)")
    parser.add_argument("--k", type=int, default=10, help="top-k cut-off (default: 10)")
    return parser


def mean_off_diagonal(similarity):
    """Mean of a square ``[..., n, n]`` matrix without its diagonal."""
    n = similarity.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=similarity.device)
    return similarity[..., off].mean().item()


def cross_user_cos(interests):
    """Per interest query, the mean cosine between different users' interests ``[K]``."""
    unit = normalize(interests, dim=-1).transpose(0, 1)  # [K, B, d]
    return [round(mean_off_diagonal(q @ q.T), 4) for q in unit]


def within_user_cos(interests):
    unit = normalize(interests, dim=-1)  # [B, K, d]
    return round(mean_off_diagonal(unit @ unit.transpose(1, 2)), 4)


def with_histories_of(batch, model, order):
    """The batch with every row's history (recent window, long history and its index) taken
    from row ``order[i]``; the rest of the row is its own."""
    moved = (model.ITEM_SEQ, model.ITEM_SEQ_LEN, model.USER_ID, TARGET_POSITION_FIELD,
             *HISTORY_FIELDS)
    return Interaction({field: values[order] if field in moved else values
                        for field, values in batch.interaction.items()})


def seen_share(user_history, users, positions, top):
    """Share of the top-k ids ``[B, k]`` that each row's user (``users`` [B]) interacted with
    before its target (at ``positions`` [B]) in ``user_history`` (the dataset's table)."""
    seen = user_history.before(users, positions)  # [B, S]
    hits = (top.unsqueeze(2) == seen.to(top.device).unsqueeze(1)).any(2)  # [B, k]
    return round(hits.float().mean().item(), 4)


def interest_report(model, batch, k, user_history):
    model.eval()
    with torch.no_grad():
        interests, _ = model.forward(batch)  # [B, K, d]
        order = torch.roll(torch.arange(len(interests)), 1)  # every row gets another row's history
        swapped, _ = model.forward(with_histories_of(batch, model, order))  # [B, K, d]
        scale = model.dmil.logit_scale()
        # the model's own score (cosine or dot product), padding item left out
        logits = scale * max_over_interests(interests, model.item_embeddings(),
                                            model.dmil.normalize)[:, 1:]  # [B, n_items - 1]
        top = model.full_sort_predict(batch)[:, 1:].topk(k, dim=1).indices + 1  # [B, k] item ids
    return {"rows": len(interests), "cross_user_cos": cross_user_cos(interests),
            "within_user_cos": within_user_cos(interests),
            "swapped_history_cos": round((normalize(interests, dim=-1)
                                          * normalize(swapped, dim=-1)).sum(-1).mean().item(), 4),
            "logit_std": round(logits.std(1).mean().item(), 4),
            "logit_scale": round(scale.item(), 4),
            "item_bias_std": None if model.item_bias is None
            else round(model.item_bias[1:].std().item(), 4),
            f"distinct_top{k}_items": int(top.unique().numel()),
            f"seen_share_top{k}": seen_share(user_history, batch[model.USER_ID],
                                             batch[TARGET_POSITION_FIELD], top)}


def per_interest_topk(model, interests, k):
    """The top-``k`` item ids each interest retrieves on its own ``[B, K, k]`` (the model's
    logits ``scale * cos + bias``; padding item 0 never retrieved)."""
    items = model.item_embeddings()  # [n_items, d]
    if model.dmil.normalize:
        interests, items = normalize(interests, dim=-1), normalize(items, dim=-1)
    scores = interests @ items.T  # [B, K, n_items]
    if model.item_bias is not None:
        scores = model.dmil.logit_scale() * scores + model.item_bias
    return scores[..., 1:].topk(k, dim=-1).indices + 1  # [B, K, k]


def planted_topic_tables(planted, item_tokens, user_tokens):
    """Item topics ``[n_items]`` (-1 = padding or no topic) and planted topics per user
    ``[n_users, T]`` (bool) in RecBole's internal ids, from a ``<dataset>.interests`` dict."""
    index = {topic: t for t, topic in enumerate(planted["topics"])}
    item_topic = torch.tensor([index.get(planted["item_topic"].get(str(token)), -1)
                               for token in item_tokens])  # [n_items]
    user_planted = torch.zeros(len(user_tokens), len(index), dtype=torch.bool)  # [n_users, T]
    for user, token in enumerate(user_tokens):
        for topic in planted["user_topics"].get(str(token), []):
            user_planted[user, index[topic]] = True
    return item_topic, user_planted


def dominant_topics(topics):
    """The most frequent topic of each top-k list and its share ``([B, K], [B, K])``."""
    n_topics = int(topics.max()) + 2  # -1 (no topic) shifted to bin 0
    counts = torch.nn.functional.one_hot(topics + 1, n_topics).sum(2)  # [B, K, T + 1]
    counts[..., 0] = 0  # an item without a topic never makes the dominant topic
    share, dominant = counts.max(-1)  # [B, K], [B, K]
    return dominant - 1, share.float() / topics.shape[-1]


def planted_topic_report(top, targets, item_topic, user_planted):
    """Which planted topic each interest follows.

    Args:
        top: item ids each interest retrieves on its own ``[B, K, k]``.
        targets: the rows' target item ids ``[B]``.
        item_topic: topic index per item id ``[n_items]`` (-1 = none).
        user_planted: the rows' planted topics ``[B, T]`` (bool).

    Returns a dict: ``planted_share_topk`` (share of the per-interest top-k slots in one of the
    user's planted topics) against ``chance_planted_share`` (planted topics / all topics);
    ``interest_purity`` (mean share of an interest's top-k in its dominant topic);
    ``interests_on_planted`` (share of interests whose dominant topic is planted);
    ``mean_planted_covered`` and ``users_covering_2plus_planted`` (distinct planted topics among
    a user's K dominant topics: mean, share of users with >= 2); ``repeated_interests`` (per
    user, K minus the distinct dominant topics: interests spent on a topic another one already
    follows); ``target_topic_covered``
    (share of rows whose target's topic is some interest's dominant topic); and, per interest,
    ``interest_topic_concentration``: the share of users for whom it follows its most common
    topic (near 1 = the interest ignores the user).
    """
    topics = item_topic[top]  # [B, K, k]
    slot_planted = user_planted.gather(1, topics.clamp(min=0).flatten(1)).view_as(topics) \
        & (topics >= 0)  # [B, K, k]
    dominant, purity = dominant_topics(topics)  # [B, K], [B, K]
    on_planted = user_planted.gather(1, dominant.clamp(min=0)) & (dominant >= 0)  # [B, K]
    n_topics = user_planted.shape[1]
    # [B, T]: topics some interest follows (-1, no topic, shifted to a dropped column)
    followed = torch.nn.functional.one_hot(dominant + 1, n_topics + 1)[..., 1:].bool().any(1)
    covered_counts = (followed & user_planted).sum(1)  # [B] planted topics some interest follows
    repeated = dominant.shape[1] - followed.sum(1) - (dominant < 0).sum(1)  # [B]
    target_topic = item_topic[targets]  # [B]
    target_covered = ((dominant == target_topic.unsqueeze(1)) & (target_topic >= 0).unsqueeze(1)).any(1)
    concentration = [round(torch.bincount(dominant[:, h].clamp(min=0), minlength=n_topics)
                           .max().item() / len(dominant), 4) for h in range(dominant.shape[1])]
    k = top.shape[-1]
    return {f"planted_share_top{k}": round(slot_planted.float().mean().item(), 4),
            "chance_planted_share": round(user_planted.float().mean().item(), 4),
            "interest_purity": round(purity.mean().item(), 4),
            "interests_on_planted": round(on_planted.float().mean().item(), 4),
            "mean_planted_covered": round(covered_counts.float().mean().item(), 4),
            "users_covering_2plus_planted": round((covered_counts >= 2).float().mean().item(), 4),
            "repeated_interests": round(repeated.float().mean().item(), 4),
            "target_topic_covered": round(target_covered.float().mean().item(), 4),
            "interest_topic_concentration": concentration}


def planted_file(config):
    """``<data_path>/<dataset>.interests`` if the dataset ships one, else None."""
    path = os.path.join(config["data_path"], f"{config['dataset']}.interests")
    return path if os.path.isfile(path) else None


def planted_report_of(model, dataset, batch, k, path):
    with open(path, encoding="utf-8") as f:
        planted = json.load(f)
    item_topic, user_planted = planted_topic_tables(
        planted, dataset.field2id_token[dataset.iid_field], dataset.field2id_token[dataset.uid_field])
    model.eval()
    with torch.no_grad():
        top = per_interest_topk(model, model.forward(batch)[0], k).cpu()  # [B, K, k]
    return planted_topic_report(top, batch[model.ITEM_ID].cpu(), item_topic,
                                user_planted[batch[model.USER_ID].cpu()])


def checkpoint_report(args, _config_files=None):
    from recbole_hymirec.quick_start import load_data_and_model

    config, model, dataset, _, valid_data, _ = load_data_and_model(args.checkpoint)
    batch = first_valid_rows(valid_data, args.rows, config["device"])
    report = interest_report(model, batch, args.k, dataset.user_history)
    path = planted_file(config)
    if path is not None:
        report["planted"] = planted_report_of(model, dataset, batch, args.k, path)
    return report


def first_valid_rows(valid_data, n, device):
    """The first ``n`` valid rows as one interaction (full-sort batches are tuples)."""
    rows = []
    for batch in valid_data:
        rows.append(batch[0] if isinstance(batch, tuple) else batch)
        if sum(len(r) for r in rows) >= n:
            break
    return cat_interactions(rows)[:n].to(device)


def main(argv=None):
    return run_report_command(build_parser(), argv, "INTERESTS", checkpoint_report,
                              overrides=False)


if __name__ == "__main__":
    sys.exit(main())
