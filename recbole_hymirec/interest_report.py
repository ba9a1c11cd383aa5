"""How personal are a trained HyMiRec's interests? Prints numbers, asserts nothing.

    python -m recbole_hymirec.interest_report saved/HyMiRec-....pth [--rows 256] [--k 10]

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
"""
import argparse
import sys

import torch
from recbole.data.interaction import Interaction, cat_interactions
from torch.nn.functional import normalize

from recbole_hymirec.cli import run_report_command
from recbole_hymirec.data.dataset import TARGET_POSITION_FIELD
from recbole_hymirec.model.dmil import max_over_interests


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
    """The batch with every row's history (recent window + long-history index) taken from
    row ``order[i]``; the rest of the row is its own."""
    moved = (model.ITEM_SEQ, model.ITEM_SEQ_LEN, model.USER_ID, TARGET_POSITION_FIELD)
    return Interaction({field: values[order] if field in moved else values
                        for field, values in batch.interaction.items()})


def seen_share(model, batch, top):
    """Share of the top-k ids ``[B, k]`` that each row's user interacted with before its target."""
    users, positions = batch[model.USER_ID], batch[TARGET_POSITION_FIELD]
    seen = model.user_history.before(users, positions)  # [B, S]
    hits = (top.unsqueeze(2) == seen.to(top.device).unsqueeze(1)).any(2)  # [B, k]
    return round(hits.float().mean().item(), 4)


def interest_report(model, batch, k):
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
            f"seen_share_top{k}": seen_share(model, batch, top)}


def checkpoint_report(args, _config_files=None):
    from recbole_hymirec.quick_start import load_data_and_model

    config, model, _, _, valid_data, _ = load_data_and_model(args.checkpoint)
    return interest_report(model, first_valid_rows(valid_data, args.rows, config["device"]), args.k)


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
