"""Training-free reference scores on a protocol's valid and test rows: prints numbers.

    python -m recbole_hymirec.tools.split_report -d ml-100k [--config_files ...] [--k 10] [--key=value ...]

Prints one line ``SPLIT {json}`` with, for the valid rows and the test rows, NDCG@k of two
scorers that learn nothing, ranking every item as the leaderboard does:

* ``popularity``: each item's interaction count in the training split;
* ``content_last_item``: cosine between the centred content embedding of the row's most recent
  item and every other item (the recent item itself is left out);

plus ``cos_last_item_target``, the mean cosine between the most recent item and the target, and
each reference's test/valid ratio. With the protocol key ``mask_seen_items`` both scorers rank
only the items the user has not interacted with, as the leaderboard's models then do. A model that leans on content (HyMiRec) and one that leans on
item popularity (ID embeddings) move apart from valid to test when these references do: compare
a model's test/valid ratio with theirs before reading it as over-fitting or leakage.
"""
import argparse
import sys

import torch

from recbole_hymirec.cli import run_report_command

MODEL = "HyMiRec"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    parser.add_argument("--k", type=int, default=10, help="NDCG cut-off (default: 10)")
    return parser


def ndcg_at_k(scores, targets, k):
    """Mean NDCG@k of one target per row ``scores [B, n_items]``, ``targets [B]``; column 0 is
    padding and never ranked; ties are resolved in the target's favour."""
    scores = scores.clone()
    scores[:, 0] = float("-inf")
    target_scores = scores.gather(1, targets.unsqueeze(1))  # [B, 1]
    ranks = (scores > target_scores).sum(1).float()  # [B] 0 = first
    gains = torch.where(ranks < k, 1.0 / torch.log2(ranks + 2.0), torch.zeros_like(ranks))
    return gains.mean().item()


def last_items(split_dataset):
    """Each row's most recent history item ``[B]`` and its target ``[B]``."""
    feat = split_dataset.inter_feat
    sequences, lengths = feat[split_dataset.item_id_list_field], feat[split_dataset.item_list_length_field]
    rows = torch.arange(len(sequences))
    return sequences[rows, lengths - 1], feat[split_dataset.iid_field]


def without_seen(scores, seen, users):
    """``scores [B, n_items]`` with each row's seen items at ``-inf`` (``seen`` None: unchanged)."""
    if seen is None:
        return scores
    scores = scores.clone()
    scores[seen.index(users)] = float("-inf")
    return scores


def split_references(split_dataset, counts, unit_embeddings, k, seen=None):
    """The two reference NDCG@k and the recent-item/target cosine on one split's rows."""
    recent, targets = last_items(split_dataset)
    users = split_dataset.inter_feat[split_dataset.uid_field]  # [B]
    content = unit_embeddings[recent] @ unit_embeddings.T  # [B, n_items]
    content[torch.arange(len(recent)), recent] = float("-inf")
    content = without_seen(content, seen, users)
    popularity = without_seen(counts.unsqueeze(0).expand(len(targets), -1), seen, users)  # [B, n_items]
    return {"rows": len(targets),
            f"popularity_ndcg@{k}": round(ndcg_at_k(popularity, targets, k), 4),
            f"content_last_item_ndcg@{k}": round(ndcg_at_k(content, targets, k), 4),
            "cos_last_item_target": round(
                (unit_embeddings[recent] * unit_embeddings[targets]).sum(1).mean().item(), 4)}


def test_over_valid(valid, test, k):
    return {name: round(test[name] / valid[name], 3) if valid[name] else None
            for name in (f"popularity_ndcg@{k}", f"content_last_item_ndcg@{k}")}


def run_split_report(dataset_name, config_files, k):
    from recbole.data import data_preparation

    from recbole_hymirec.config import Config
    from recbole_hymirec.data.dataset import training_item_counts
    from recbole_hymirec.data.seen_items import phase_seen_items
    from recbole_hymirec.model.item_codes import content_embeddings
    from recbole_hymirec.utils import create_dataset

    config = Config(model=MODEL, dataset=dataset_name, config_file_list=config_files,
                    config_dict={"show_progress": False})
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    embeddings, _ = content_embeddings(config, dataset)
    unit_embeddings = torch.nn.functional.normalize(embeddings, dim=1)  # [n_items, D]
    counts = training_item_counts(train_data._dataset)  # [n_items]
    masked = bool(config["mask_seen_items"])
    valid_seen, test_seen = (phase_seen_items(train_data._dataset, valid_data._dataset,
                                              test_data._dataset)
                             if masked else (None, None))
    report = {"dataset": dataset_name, "k": k, "mask_seen_items": masked,
              "valid": split_references(valid_data._dataset, counts, unit_embeddings, k, valid_seen),
              "test": split_references(test_data._dataset, counts, unit_embeddings, k, test_seen)}
    report["test_over_valid"] = test_over_valid(report["valid"], report["test"], k)
    return report


def main(argv=None):
    return run_report_command(build_parser(), argv, "SPLIT",
                              lambda args, files: run_split_report(args.dataset, files, args.k))


if __name__ == "__main__":
    sys.exit(main())
