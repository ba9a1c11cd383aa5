"""Serve recommendations from a trained checkpoint: each user's top-k, seen items excluded.

    python -m recbole_hymirec.tools.recommend CHECKPOINT --out recs.csv [--topk 10]
        [--format csv|jsonl] [--new_items NEW.item]

Rebuilds the checkpoint's dataset and model (as ``evaluate`` does) and ranks the whole
catalogue for every user of the test split, from the history the evaluation reads (every item
before the user's held-out last one), through the model's ``full_sort_predict``: an item's
score is its best interest's score, so the list is the K interests' lists merged by score.
Every item the user has interacted with, the held-out one included, is excluded. ``interest``
names the interest that proposed the item (the index of the ranking vector; empty for a
model without interests).

``--new_items`` takes a ``.item`` file (the dataset's text fields) of items the checkpoint
has not seen: they are embedded by the same encoder, centred with the catalogue's statistics,
coded with the fitted codebook and added to the catalogue without retraining, so they can be
recommended at once (``new`` marks them). Items the dataset already has are skipped.

Output: CSV rows ``user_id,rank,item_id,score,interest,new``, or one JSON object per user
``{"user_id": ..., "items": [{"item_id", "score", "interest", "new"}, ...]}``; written atomically.
Prints one line ``RECOMMEND {json}`` with the counts.
"""
import argparse
import csv
import io
import json
import os
import sys

import torch

from recbole_hymirec.cli import run_report_command
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.tools.prepare import atomic_text_file

FORMATS = ("csv", "jsonl")
CSV_HEADER = ("user_id", "rank", "item_id", "score", "interest", "new")


# ----------------------------------------------------------------------------- new items

def item_file_tokens(path, item_id_field, field_separator="\t"):
    """The item id tokens of an atomic ``.item`` file, in file order."""
    if not (path.endswith(".item") and os.path.isfile(path)):
        raise ConfigError(f"new items file '{path}' is not an existing .item file. Fix: pass a "
                          "RecBole atomic .item file with the dataset's item text fields.")
    with open(path, encoding="utf-8") as f:
        header = [name.split(":", 1)[0].strip()
                  for name in f.readline().rstrip("\n").split(field_separator)]
        if item_id_field not in header:
            raise ConfigError(f"new items file '{path}' has no '{item_id_field}' column (found "
                              f"{header}). Fix: name the id column {item_id_field}:token.")
        column = header.index(item_id_field)
        return [line.split(field_separator)[column].strip() for line in f if line.strip()]


def add_new_items(config, model, dataset, path):
    """Embed and code the items of ``path`` the dataset lacks and append them to ``model``'s
    catalogue; returns their tokens (in id order, after the dataset's)."""
    from recbole_hymirec.data.item_text import read_item_texts
    from recbole_hymirec.model.item_codes import new_item_inputs

    if not hasattr(model, "add_items"):
        raise ConfigError(f"{config['model']} cannot take new items: it scores items by ID. "
                          "Fix: use a HyMiRec checkpoint, or retrain with the items.")
    known = set(dataset.field2id_token[dataset.iid_field])
    tokens = [t for t in dict.fromkeys(item_file_tokens(path, dataset.iid_field,
                                                        config["field_separator"])) if t not in known]
    if not tokens:
        raise ConfigError(f"every item of '{path}' is already in the dataset. Fix: pass items "
                          "the checkpoint has not seen.")
    folder, name = os.path.split(os.path.abspath(path))
    texts = read_item_texts(folder, name[:-len(".item")], tokens, config["item_text_fields"],
                            template=config["item_text_template"], item_id_field=dataset.iid_field,
                            field_separator=config["field_separator"])
    content, tower_content = new_item_inputs(config, dataset, texts)
    codes = model.codebook.encode(content.to(model.device))  # [n, L] with the fitted codewords
    model.add_items(content, tower_content, codes)
    return tokens


# ----------------------------------------------------------------------------- ranking

def exclude_seen(scores, seen, user_ids):
    """Sets the padding item and every seen item of each row to -inf in ``scores`` [B, n]."""
    rows, items = seen.index(user_ids)
    scores[rows.to(scores.device), items.to(scores.device)] = -torch.inf
    scores[:, 0] = -torch.inf
    return scores


def rank_batch(model, interaction, seen, k):
    """``(item ids [B, k'], scores [B, k'], interests [B, k'] or None)`` of one batch."""
    scores = model.full_sort_predict(interaction).reshape(len(interaction), -1)  # [B, n_items]
    scores = exclude_seen(scores.float(), seen, interaction[model.USER_ID])
    top = scores.topk(min(k, scores.shape[1] - 1), dim=1)
    interests = None
    if hasattr(model, "proposing_interests"):
        interests = model.proposing_interests(interaction, top.indices)
    return top.indices, top.values, interests


def recommendations(model, loader, seen, k):
    """``(user id, [(item id, score, interest or None), ...])`` for every row of ``loader``."""
    model.eval()
    with torch.no_grad():
        for batch in loader:
            interaction = (batch[0] if isinstance(batch, tuple) else batch).to(model.device)
            items, scores, interests = rank_batch(model, interaction, seen, k)
            for row, user in enumerate(interaction[model.USER_ID].tolist()):
                kept = torch.isfinite(scores[row])
                proposers = interests[row][kept].tolist() if interests is not None else None
                yield user, list(zip(items[row][kept].tolist(), scores[row][kept].tolist(),
                                     proposers or [None] * int(kept.sum())))


# ----------------------------------------------------------------------------- output

def output_format(path, requested):
    chosen = requested or os.path.splitext(path)[1].lstrip(".").lower()
    if chosen not in FORMATS:
        raise ConfigError(f"cannot tell the output format of '{path}'. Fix: end it in .csv or "
                          ".jsonl, or pass --format csv|jsonl.")
    return chosen


def user_lines(user, ranked, fmt):
    """The output lines of one user's ``ranked`` (item token, score, interest, new) tuples."""
    if fmt == "jsonl":
        items = [{"item_id": item, "score": round(score, 6), "interest": interest, "new": new}
                 for item, score, interest, new in ranked]
        return json.dumps({"user_id": user, "items": items}, ensure_ascii=False) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for rank, (item, score, interest, new) in enumerate(ranked, 1):
        writer.writerow((user, rank, item, f"{score:.6f}", "" if interest is None else interest, new))
    return buffer.getvalue()


def recommend(checkpoint, out, k=10, fmt=None, new_items=None):
    """Write every test user's top-``k`` to ``out``; returns the counts."""
    from recbole_hymirec.data.seen_items import every_seen_item
    from recbole_hymirec.quick_start import load_data_and_model

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"--topk={k} must be an integer >= 1. Fix: --topk=10.")
    fmt = output_format(out, fmt)
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(checkpoint)
    item_tokens = list(dataset.field2id_token[dataset.iid_field])
    n_known = len(item_tokens)
    if new_items:
        item_tokens += add_new_items(config, model, dataset, new_items)
    seen = every_seen_item(train_data.dataset, valid_data.dataset, test_data.dataset)
    user_tokens = dataset.field2id_token[dataset.uid_field]
    users = 0
    with atomic_text_file(os.path.abspath(out)) as f:
        if fmt == "csv":
            f.write(",".join(CSV_HEADER) + "\n")
        for user, ranked in recommendations(model, test_data, seen, k):
            named = [(item_tokens[i], s, h, i >= n_known) for i, s, h in ranked]
            f.write(user_lines(str(user_tokens[user]), named, fmt))
            users += 1
    return {"out": out, "format": fmt, "users": users, "topk": k, "items": len(item_tokens) - 1,
            "new_items": len(item_tokens) - n_known}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by a training run")
    parser.add_argument("--out", required=True, help="output file (.csv or .jsonl)")
    parser.add_argument("--topk", type=int, default=10, help="items per user (default 10)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="csv or jsonl (default: from the extension of --out)")
    parser.add_argument("--new_items", default=None,
                        help="a .item file of items the checkpoint has not seen, to add")
    return parser


def make_report(args, _config_files):
    return recommend(args.checkpoint, args.out, args.topk, args.format, args.new_items)


def main(argv=None):
    return run_report_command(build_parser(), argv, "RECOMMEND", make_report, overrides=False)


if __name__ == "__main__":
    sys.exit(main())
