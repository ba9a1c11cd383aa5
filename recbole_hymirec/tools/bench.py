"""Efficiency benchmark: prints numbers, asserts nothing.

    python -m recbole_hymirec.tools.bench -d ml-100k [--part all|serve|curve|embed] [--config_files ...] [--key=value ...]

Prints one line ``BENCH {json}``, measured on this machine's CPU and, when a GPU is present,
on CUDA too (``device`` names it):

* ``serve`` -- per-user inference latency (full ranking; batch 1 and batch 256) of HyMiRec
  against the same model whose LLM reads the whole ``long_seq_len`` history
  (``refiner_reads: full_history``), and their ratio; bytes fetched per user history (uint8
  codes vs fp32 embeddings); training rows/s with ``precision: fp32`` and ``precision: auto``
  on the same batches, and their ratio; peak memory.
* ``curve`` -- the same comparison at every history length of ``--lengths`` (the points of
  ``python -m recbole_hymirec.tools.efficiency``, which also writes them as a page).
* ``embed`` -- content-LLM embedding throughput (items/s) in fp32 and in ``auto``, and their
  ratio.

Latencies use ``precision: auto``; ``precision_auto`` says what it resolved to.

On a CPU pass ``--config_files properties/presets/hymirec_cpu.yaml`` (the 4-layer refiner).
"""
import argparse
import functools
import sys
import time

import torch

from recbole_hymirec.cli import run_report_command
from recbole_hymirec.tools.efficiency import add_curve_arguments, efficiency_curve
from recbole_hymirec.tools.serving import (MODEL, available_devices, build_model, device_name,
                                           interleaved_latency, peak_memory_mib, rows_read_by,
                                           serve_data, serve_setting, sync)

COMPARED_PRECISIONS = ("fp32", "auto")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    parser.add_argument("--part", default="all", choices=["all", "serve", "curve", "embed"],
                        help="what to measure (default: all)")
    parser.add_argument("--n_items", type=int, default=256, help="items embedded per device")
    parser.add_argument("--batch", type=int, default=256, help="rows of the batched latency")
    parser.add_argument("--single_rows", type=int, default=20,
                        help="rows timed one by one for the batch-1 latency (median)")
    parser.add_argument("--train_steps", type=int, default=10, help="steps timed for rows/s")
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed embedding passes per precision, interleaved (the best counts)")
    add_curve_arguments(parser)
    return parser


def _precision_names(device):
    """``{"fp32": "fp32", "auto": "bf16" or "fp32"}``: the compared settings, resolved."""
    from recbole_hymirec.model.llm import resolve_precision

    return {name: resolve_precision(name, device) for name in COMPARED_PRECISIONS}


def _embedding_encoder(config, texts, device, precision):
    """A content encoder under a resolved ``precision``, warmed up on one batch."""
    from recbole_hymirec.model.content_encoder import ContentEncoder
    from recbole_hymirec.model.llm import llm_dtype, load_causal_lm

    model, tokenizer, _ = load_causal_lm(config["llm_path"], dtype=llm_dtype(precision, device),
                                         device=device)
    encoder = ContentEncoder(model, tokenizer, max_text_len=config["max_text_len"],
                             batch_size=config["encoder_batch_size"], precision=precision)
    encoder.encode(texts[: config["encoder_batch_size"]], show_progress=False)  # warm-up
    return encoder


def _encode_seconds(encoder, texts, device):
    sync(device)
    start = time.perf_counter()
    encoder.encode(texts, show_progress=False)
    sync(device)
    return time.perf_counter() - start


def embedding_throughput(config, texts, device, rounds=1):
    """Items/s of the content encoder on ``device`` in fp32 and in ``auto``, timed in
    interleaved passes (the best of ``rounds`` each), and their ratio."""
    resolved = _precision_names(device)
    encoders = {name: _embedding_encoder(config, texts, device, precision)
                for name, precision in resolved.items()}
    seconds = {name: float("inf") for name in encoders}
    for _ in range(max(rounds, 1)):  # interleaved: a busy spell slows both, not one
        for name, encoder in encoders.items():
            seconds[name] = min(seconds[name], _encode_seconds(encoder, texts, device))
    report = {"items": len(texts), "precision_auto": resolved["auto"]}
    for name in encoders:
        report[f"seconds_{name}"] = round(seconds[name], 3)
        report[f"embed_items_per_s_{name}"] = round(len(texts) / seconds[name], 2)
    report["embed_speedup_auto"] = round(seconds["fp32"] / seconds["auto"], 3)
    return report


def bench_embed(config, dataset, n_items, rounds=1):
    from recbole_hymirec.data.item_text import item_texts

    _, texts = item_texts(config, dataset)
    texts = texts[1:n_items + 1]  # skip the padding item
    report = {"llm": str(config["llm_path"] or "smollm2 (packaged)"),
              "batch_size": config["encoder_batch_size"], "max_text_len": config["max_text_len"]}
    for device in available_devices():
        name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
        report[device] = dict(embedding_throughput(config, texts, device, rounds), device=name)
    return report


# ----------------------------------------------------------------------------- serving

def history_bytes(config, dataset, item_codes, content):
    """Bytes fetched per user history: the uint8 codes vs the fp32 embeddings of its items."""
    per_item_codes = item_codes.shape[1] * item_codes.element_size()
    per_item_fp32 = content.shape[1] * 4
    lengths = dataset.user_history.lengths.float().clamp(max=config["long_seq_len"])  # [U]
    mean_items = float(lengths[lengths > 0].mean())
    return {"long_seq_len": config["long_seq_len"], "mean_items_per_history": round(mean_items, 1),
            "codes_per_item": per_item_codes, "fp32_per_item": per_item_fp32,
            "codes_per_history": round(mean_items * per_item_codes),
            "fp32_per_history": round(mean_items * per_item_fp32),
            "ratio": round(per_item_fp32 / per_item_codes, 1)}


def training_rows_per_s(models, train_data, steps, device):
    """Training rows/s of each model's optimiser loop, ``{name: rows/s}``: every model takes
    the same batches, one step each in turn (the first round warms up, not timed)."""
    optimizers = {}
    for name, model in models.items():
        model.train()
        optimizers[name] = torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rows, seconds = 0, dict.fromkeys(models, 0.0)
    for step, batch in enumerate(train_data):
        if step > steps:
            break
        batch = batch.to(device)
        for name, model in models.items():
            elapsed = _training_step_seconds(model, optimizers[name], batch, device)
            if step:  # step 0 warms up
                seconds[name] += elapsed
        if step:
            rows += len(batch)
    return {name: round(rows / s, 1) if s else None for name, s in seconds.items()}


def _training_step_seconds(model, optimizer, batch, device):
    sync(device)
    start = time.perf_counter()
    optimizer.zero_grad()
    loss = model.calculate_loss(batch)
    (sum(loss) if isinstance(loss, tuple) else loss).backward()
    optimizer.step()
    sync(device)
    return time.perf_counter() - start


def bench_serve_on(device, config_files, dataset_name, args):
    """Both variants on one device: latency, ratio, training rows/s in fp32 and ``auto``, peak
    memory."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config, train_data, rows = serve_data(device, config_files, dataset_name, args.batch)
    dataset = train_data._dataset
    build = functools.partial(build_model, config_files, dataset_name, dataset)
    use_gpu = serve_setting(device, args.batch)
    hybrid, hybrid_config = build(use_gpu)
    full, full_config = build(dict(use_gpu, refiner_reads="full_history"))
    latency = interleaved_latency(
        {"hybrid": (hybrid, rows_read_by(hybrid_config, dataset, rows)),
         "full_history": (full, rows_read_by(full_config, dataset, rows))},
        args.single_rows, device)
    timings = ("batch_1", f"batch_{len(rows)}")
    report = {"device": device_name(device), "precision_auto": hybrid.llm_precision}
    for name, measured in latency.items():
        report[f"{name}_ms_per_user"] = {k: measured[k] for k in timings}
    report["speedup"] = {k: round(latency["full_history"][k] / latency["hybrid"][k], 3)
                         for k in timings}
    del full
    trained = {"fp32": build(dict(use_gpu, precision="fp32"))[0], "auto": hybrid}
    rates = training_rows_per_s(trained, train_data, args.train_steps, device)
    report.update({f"train_rows_per_s_{name}": rate for name, rate in rates.items()})
    report["train_rows_per_s"] = rates["auto"]
    report["train_speedup_auto"] = (round(rates["auto"] / rates["fp32"], 3)
                                    if rates["auto"] and rates["fp32"] else None)
    report["peak_memory_mib"] = peak_memory_mib(device)
    report["bytes_per_history"] = history_bytes(config, dataset, hybrid.item_codes,
                                                hybrid.item_content)
    report["settings"] = {k: config[k] for k in ("llm_num_layers", "MAX_ITEM_LIST_LENGTH",
                                                  "long_seq_len", "n_interests",
                                                  "codebook_layers", "train_batch_size")}
    return report


def run_bench(args, config_files):
    from recbole_hymirec.config import Config
    from recbole_hymirec.utils import create_dataset

    report = {"dataset": args.dataset, "part": args.part, "torch_threads": torch.get_num_threads()}
    if args.part in ("all", "serve"):
        report["serve"] = {device: bench_serve_on(device, config_files, args.dataset, args)
                           for device in available_devices()}
    if args.part in ("all", "curve"):
        report["curve"] = {device: efficiency_curve(args, config_files, device)
                           for device in available_devices()}
    if args.part in ("all", "embed"):
        config = Config(model=MODEL, dataset=args.dataset, config_file_list=config_files)
        report["embed"] = bench_embed(config, create_dataset(config), args.n_items, args.rounds)
    return report


def main(argv=None):
    return run_report_command(build_parser(), argv, "BENCH", run_bench)


if __name__ == "__main__":
    sys.exit(main())
