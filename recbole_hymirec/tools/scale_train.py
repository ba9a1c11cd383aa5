"""Training steps of HyMiRec over a synthetic catalogue (the ``train`` part of
``python -m recbole_hymirec.tools.scale``).

The catalogue is written as RecBole atomic files (``.item``: an id and a title; ``.inter``:
users with popularity-skewed random sequences) into a temporary folder. The item embeddings
are the stage-1 benchmark's synthetic ones (:func:`synthetic_raw_embeddings`, the size of the
refiner LLM's hidden state) stored in the plugin's embedding cache under the key the model
computes, so the model's own stage 1 (centring, codebook) runs on them without embedding a
million texts with the LLM. The model is HyMiRec with the CPU preset (SmolLM2's first 4
layers), trained with ``sampled_negatives`` at the preset's batch size, then with a full
softmax (``sampled_negatives: 0``) at ``--full_batch`` rows; one chunked full ranking of an
evaluation batch closes the run.
"""
import os
import random
from itertools import accumulate
import shutil
import tempfile
import time

import torch

from recbole_hymirec.tools.scale import peak_rss_gib, synthetic_raw_embeddings, timed

DATASET = "scale-synthetic"


def add_train_parser(parts):
    train = parts.add_parser("train", help="HyMiRec training steps over a synthetic catalogue")
    train.add_argument("--items", type=int, default=1_000_000, help="catalogue size")
    train.add_argument("--users", type=int, default=4000, help="users")
    train.add_argument("--length", type=int, default=40, help="interactions per user")
    train.add_argument("--steps", type=int, default=4, help="timed steps per loss")
    train.add_argument("--negatives", type=int, default=1024, help="sampled_negatives")
    train.add_argument("--full_batch", type=int, default=8,
                       help="rows per full-softmax step (0: skip the full softmax)")
    train.add_argument("--fit_sample", type=int, default=16384, help="codebook_fit_sample")
    train.add_argument("--iters", type=int, default=10, help="codebook_iters")
    train.add_argument("--seed", type=int, default=0, help="random seed")


def write_catalogue(folder, n_items, n_users, length, seed):
    """``folder/DATASET/DATASET.{item,inter}``: item ``i`` titled ``item i``; each user
    ``length`` items drawn with probability ~ 1 / i (Zipf), one per time step."""
    rng = random.Random(seed)
    root = os.path.join(folder, DATASET)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, f"{DATASET}.item"), "w", encoding="utf-8") as f:
        f.write("item_id:token\ttitle:token_seq\n")
        f.writelines(f"{item}\titem {item}\n" for item in range(1, n_items + 1))
    items = range(1, n_items + 1)
    cumulative = list(accumulate(1.0 / item for item in items))
    with open(os.path.join(root, f"{DATASET}.inter"), "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user in range(1, n_users + 1):
            sequence = rng.choices(items, cum_weights=cumulative, k=length)
            f.writelines(f"{user}\t{item}\t{step}\n" for step, item in enumerate(sequence))


def scale_config(folder, args):
    """HyMiRec with the leave-one-out protocol and the CPU preset on the synthetic catalogue;
    RecBole loads only the item ids (the item text is read from the raw file)."""
    from recbole_hymirec.config import Config
    from recbole_hymirec.property_files import properties_dir

    files = [os.path.join(properties_dir(), "benchmark", "ml-100k.yaml"),
             os.path.join(properties_dir(), "presets", "hymirec_cpu.yaml")]
    settings = {"data_path": folder, "item_text_fields": ["title"],
                "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
                "embedding_cache_dir": os.path.join(folder, "cache"), "show_progress": False,
                "sampled_negatives": args.negatives, "codebook_fit_sample": args.fit_sample,
                "codebook_iters": args.iters, "seed": args.seed, "metrics": ["Recall", "NDCG"],
                "topk": [10], "precision": "fp32"}
    return Config("HyMiRec", DATASET, config_file_list=files, config_dict=settings)


def fill_embedding_cache(config, dataset, dim, seed):
    """Store synthetic raw embeddings ``[n_items, dim]`` under the key stage 1 looks up."""
    from recbole_hymirec.data.item_text import item_texts
    from recbole_hymirec.model.embedding_cache import cached_item_embeddings
    from recbole_hymirec.model.item_codes import embedding_cache_dir, embedding_key_fields

    tokens, texts = item_texts(config, dataset)
    cached_item_embeddings(embedding_cache_dir(config), embedding_key_fields(config, tokens, texts),
                           lambda: synthetic_raw_embeddings(len(tokens) - 1, dim, seed=seed),
                           expected_n=len(tokens))


def refiner_hidden_size(config):
    from recbole_hymirec.model.llm import hidden_size_of, load_causal_lm

    model, _, _ = load_causal_lm(config["llm_path"], num_layers=1, device="cpu")
    return hidden_size_of(model.config)


def step_seconds(model, batches, optimizer):
    """Median seconds of one training step (forward, backward, optimizer) over ``batches``."""
    model.train()
    times = []
    for batch in batches:
        start = time.perf_counter()
        optimizer.zero_grad()
        losses = model.calculate_loss(batch)
        (sum(losses) if isinstance(losses, tuple) else losses).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return round(sorted(times)[len(times) // 2], 3)


def take_batches(loader, count, rows):
    """The first ``count`` batches of ``loader``, each cut to ``rows`` rows."""
    batches = []
    for batch in loader:
        batches.append(batch[torch.arange(min(rows, len(batch)))])
        if len(batches) == count:
            break
    return batches


def build_model(args, folder):
    """``(config, model, train loader, test loader, report)`` with the setup's timings."""
    from recbole_hymirec.utils import create_dataset, data_preparation, get_model

    report = {}
    _, report["write_seconds"] = timed(write_catalogue, folder, args.items, args.users,
                                       args.length, args.seed)
    config = scale_config(folder, args)
    (train, _, test), report["dataset_seconds"] = timed(
        lambda: data_preparation(config, create_dataset(config)))
    report["embedding_dim"] = refiner_hidden_size(config)
    _, report["cache_seconds"] = timed(fill_embedding_cache, config, train._dataset,
                                       report["embedding_dim"], args.seed)
    model, report["model_seconds"] = timed(get_model("HyMiRec"), config, train._dataset)
    report["rss_after_model_gib"] = peak_rss_gib()
    return config, model, train, test, report


def measure_training(args):
    folder = tempfile.mkdtemp(prefix="hymirec-scale-")
    try:
        config, model, train, test, report = build_model(args, folder)
        report.update(part="train", n_items=model.n_items - 1, threads=torch.get_num_threads(),
                      train_batch_size=config["train_batch_size"], sampled_negatives=args.negatives,
                      codebook_recon_cos=round(model.stage1_stats["recon_cos_mean"], 4),
                      codebook_seconds=model.stage1_stats["codebook_seconds"])
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                     lr=config["learning_rate"])
        batches = take_batches(train, args.steps, config["train_batch_size"])
        report["sampled_step_seconds"] = step_seconds(model, batches, optimizer)
        report["peak_rss_sampled_gib"] = peak_rss_gib()
        if args.full_batch:
            model.negative_sampler = None  # what sampled_negatives: 0 builds: the full softmax
            small = take_batches(train, args.steps, args.full_batch)
            report["full_softmax_batch"] = args.full_batch
            report["full_step_seconds"] = step_seconds(model, small, optimizer)
            report["peak_rss_full_gib"] = peak_rss_gib()
        report.update(ranking(model, test, config))
        return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ranking(model, test, config):
    """Seconds of one chunked full ranking of an evaluation batch."""
    model.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        scores, seconds = timed(model.full_sort_predict, batch)
    return {"ranking_rows": len(batch), "ranking_seconds": seconds,
            "ranking_chunk_items": config["ranking_chunk_items"],
            "ranking_scores_shape": list(scores.shape), "peak_rss_after_ranking_gib": peak_rss_gib()}
