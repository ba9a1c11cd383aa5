"""Scale benchmark: stage 1 and the long-history table at catalogue sizes users run.

    python -m recbole_hymirec.tools.scale stage1 [--items 1000000] [--dim 576] [--fit_sample 65536]
    python -m recbole_hymirec.tools.scale history [--interactions 10000000] [--users 100000]
    python -m recbole_hymirec.tools.scale train [--items 1000000] [--steps 5]

Each prints one line ``SCALE {json}`` of measurements and asserts nothing.

* ``stage1``: a synthetic catalogue of raw LLM item embeddings whose spectrum is like a small
  causal LM's (one principal direction with ``--top_share`` of the variance, the others
  decaying as 1/rank, items grouped in topics, plus a large common offset that centring
  removes), run through stage 1 after the LLM: centring, codebook fit, encoding of every
  item, report. Times per phase, peak resident memory, reconstruction cosine, cluster balance.
* ``history``: the per-user history table (``HyMiRecDataset.user_history``) of
  ``--interactions`` synthetic interactions, its bytes, and the time of the batch lookups the
  loaders' transform makes (long history and target window).
* ``train``: see :mod:`recbole_hymirec.tools.scale_train`.
"""
import argparse
import json
import math
import resource
import sys
import time

import torch

from recbole_hymirec.data.dataset import UserHistory
from recbole_hymirec.model.centring import variance_shares
from recbole_hymirec.model.item_codes import fit_codebook, postprocess

GENERATION_CHUNK_ROWS = 65536


def peak_rss_gib():
    """Peak resident memory of this process so far, GiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)


def decaying_spectrum(dim, top_share):
    """Per-direction variances ``[D]`` summing to 1: ``top_share`` on the first, the rest
    proportional to ``1 / rank``."""
    tail = 1.0 / torch.arange(2, dim + 1, dtype=torch.float64)  # [D - 1]
    return torch.cat([torch.tensor([top_share], dtype=torch.float64),
                      (1.0 - top_share) * tail / tail.sum()])


def synthetic_raw_embeddings(n_items, dim, top_share=0.35, n_topics=1000, seed=0):
    """Raw item embeddings ``[n_items + 1, D]`` (row 0: padding, zero), fp32.

    Item ``i`` of topic ``t``: ``offset + sqrt(var) * (centre_t + noise_i) / sqrt(2)`` with
    ``centre_t`` and ``noise_i`` standard normal, so each coordinate ``j`` has variance
    ``var_j`` (:func:`decaying_spectrum`) and half of it is shared within a topic. The offset,
    a common direction 10x the items' spread, is the anisotropy stage 1 centres away. Written
    chunk by chunk into one table: the only [n, D] allocation.
    """
    generator = torch.Generator().manual_seed(seed)
    scale = decaying_spectrum(dim, top_share).sqrt().float() / math.sqrt(2.0)  # [D]
    centres = torch.randn(n_topics, dim, generator=generator)  # [T, D]
    offset = 10.0 * torch.randn(dim, generator=generator) / math.sqrt(dim)  # [D]
    raw = torch.zeros(n_items + 1, dim)  # [n + 1, D]
    for start in range(1, n_items + 1, GENERATION_CHUNK_ROWS):
        rows = min(GENERATION_CHUNK_ROWS, n_items + 1 - start)
        topics = torch.randint(n_topics, (rows,), generator=generator)  # [b]
        chunk = centres[topics] + torch.randn(rows, dim, generator=generator)  # [b, D]
        raw[start:start + rows] = chunk * scale + offset
    return raw


def codebook_settings(args):
    """The stage-1 config keys ``fit_codebook`` reads."""
    return {"codebook_layers": args.layers, "codebook_size": args.codebook_size,
            "codebook_max_share": None, "codebook_iters": args.iters, "seed": args.seed,
            "codebook_fit_sample": args.fit_sample or None, "codebook_pool_file": None}


def timed(function, *args):
    """``(function(*args), seconds)``."""
    start = time.perf_counter()
    result = function(*args)
    return result, round(time.perf_counter() - start, 3)


def measure_stage1(args):
    raw, generate_seconds = timed(synthetic_raw_embeddings, args.items, args.dim, args.top_share,
                                  args.topics, args.seed)
    report = {"part": "stage1", "n_items": args.items, "embedding_dim": args.dim,
              "threads": torch.get_num_threads(), "fit_sample": args.fit_sample or None,
              "generate_seconds": generate_seconds,
              "table_gib": round(raw.numel() * raw.element_size() / 2 ** 30, 3)}
    (embeddings, _), report["centre_seconds"] = timed(postprocess, raw)
    (codebook, codes), report["codebook_seconds"] = timed(fit_codebook, codebook_settings(args),
                                                          embeddings)
    stats, report["stats_seconds"] = timed(codebook.stats, embeddings[1:], codes[1:])
    shares, report["variance_seconds"] = timed(variance_shares, embeddings[1:])
    keep = ("recon_cos_mean", "recon_cos_min", "recon_cos_per_layer", "codes_used",
            "max_cluster_share", "min_cluster_share", "codeword_entropy", "unique_codes",
            "full_code_collisions", "bytes_per_item_codes", "bytes_per_item_fp32")
    report.update({key: stats[key] for key in keep}, **shares)
    report["codes_dtype"] = str(codes.dtype)
    report["peak_rss_gib"] = peak_rss_gib()
    return report


def synthetic_history(n_interactions, n_users, n_items, seed=0):
    """A :class:`UserHistory` of ``n_interactions`` random items split over ``n_users`` users
    with geometric-like lengths (mean ``n_interactions / n_users``); user id 0 is empty."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(n_users, generator=generator).pow(3) + 0.01  # skewed lengths
    lengths = (weights / weights.sum() * n_interactions).long().clamp(min=1)  # [U]
    lengths[-1] += n_interactions - int(lengths.sum())
    offsets = torch.zeros(n_users + 2, dtype=torch.long)
    offsets[2:] = torch.cumsum(lengths, 0)  # [U + 2], user 0 first and empty
    items = torch.randint(1, n_items + 1, (int(offsets[-1]),), generator=generator)
    return UserHistory(items, offsets)


def lookup_seconds(history, batch_size, long_seq_len, window, repeats, generator):
    """Median seconds of one batch's long-history and target-window lookups."""
    n_users = len(history.lengths) - 1
    times = []
    for _ in range(repeats):
        users = torch.randint(1, n_users + 1, (batch_size,), generator=generator)  # [B]
        positions = (torch.rand(batch_size, generator=generator)
                     * history.lengths[users]).long().clamp(min=1)  # [B]
        start = time.perf_counter()
        history.history(users, positions, long_seq_len)
        history.target_window(users, positions, window)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure_history(args):
    history, build_seconds = timed(synthetic_history, args.interactions, args.users, args.items,
                                   args.seed)
    table_bytes = sum(t.numel() * t.element_size()
                      for t in (history.items, history.offsets, history.train_end))
    generator = torch.Generator().manual_seed(args.seed)
    report = {"part": "history", "n_interactions": args.interactions, "n_users": args.users,
              "n_items": args.items, "build_seconds": build_seconds,
              "table_mib": round(table_bytes / 2 ** 20, 1),
              "bytes_per_interaction": round(table_bytes / args.interactions, 2),
              "long_seq_len": args.long_seq_len, "dmil_window": args.window}
    for batch_size in args.batch_sizes:
        seconds = lookup_seconds(history, batch_size, args.long_seq_len, args.window, args.repeats,
                                 generator)
        report[f"lookup_ms_batch{batch_size}"] = round(1000 * seconds, 3)
    report["peak_rss_gib"] = peak_rss_gib()
    return report


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parts = parser.add_subparsers(dest="part", required=True)
    stage1 = parts.add_parser("stage1", help="centring + codebook over a synthetic catalogue")
    stage1.add_argument("--items", type=int, default=1_000_000, help="catalogue size")
    stage1.add_argument("--dim", type=int, default=576, help="embedding size (SmolLM2-135M: 576)")
    stage1.add_argument("--top_share", type=float, default=0.35,
                        help="share of the variance on the top principal direction")
    stage1.add_argument("--topics", type=int, default=1000, help="item topics")
    stage1.add_argument("--codebook_size", type=int, default=256, help="codewords per layer")
    stage1.add_argument("--layers", type=int, default=3, help="codebook layers")
    stage1.add_argument("--iters", type=int, default=20, help="k-means iterations per layer")
    stage1.add_argument("--fit_sample", type=int, default=65536,
                        help="codebook_fit_sample (0 = fit on every item)")
    history = parts.add_parser("history", help="the per-user history table and its lookups")
    history.add_argument("--interactions", type=int, default=10_000_000, help="interactions")
    history.add_argument("--users", type=int, default=100_000, help="users")
    history.add_argument("--items", type=int, default=1_000_000, help="catalogue size")
    history.add_argument("--long_seq_len", type=int, default=1000, help="history items per row")
    history.add_argument("--window", type=int, default=10, help="dmil_window")
    history.add_argument("--batch_sizes", type=int, nargs="+", default=[256, 2048],
                         help="batch sizes to time")
    history.add_argument("--repeats", type=int, default=21, help="batches timed per size")
    for sub in (stage1, history):
        sub.add_argument("--seed", type=int, default=0, help="random seed")
    from recbole_hymirec.tools.scale_train import add_train_parser
    add_train_parser(parts)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.part == "train":
        from recbole_hymirec.tools.scale_train import measure_training
        report = measure_training(args)
    else:
        report = (measure_stage1 if args.part == "stage1" else measure_history)(args)
    print("SCALE " + json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
