"""Efficiency benchmark: prints numbers, asserts nothing.

    python -m recbole_hymirec.bench -d ml-100k [--part embed] [--n_items 256] [--key=value ...]

``--part embed``: content-LLM embedding throughput (items/s) on this machine's CPU, and on
CUDA too when a GPU is present. Prints one line ``BENCH {json}``.
"""
import argparse
import json
import sys
import time

import torch

from recbole_hymirec.cli import hand_overrides_to_recbole, run_reporting_user_errors

MODEL = "HyMiRec"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    parser.add_argument("--part", default="embed", choices=["embed"], help="what to measure")
    parser.add_argument("--n_items", type=int, default=256, help="items embedded per device")
    return parser


def available_devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def embedding_throughput(config, texts, device):
    """Items/s of the content encoder on ``device`` (one warm-up batch excluded)."""
    from recbole_hymirec.model.content_encoder import ContentEncoder
    from recbole_hymirec.model.llm import load_causal_lm

    model, tokenizer, _ = load_causal_lm(config["llm_path"], device=device)
    encoder = ContentEncoder(model, tokenizer, max_text_len=config["max_text_len"],
                             batch_size=config["encoder_batch_size"])
    encoder.encode(texts[: config["encoder_batch_size"]], show_progress=False)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.time()
    encoder.encode(texts, show_progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.time() - start
    return {"items": len(texts), "seconds": round(seconds, 3),
            "items_per_s": round(len(texts) / seconds, 2),
            "dtype": str(next(encoder.backbone.parameters()).dtype).replace("torch.", "")}


def bench_embed(dataset, config_files, n_items):
    from recbole_hymirec.config import Config
    from recbole_hymirec.model.item_codes import item_texts
    from recbole_hymirec.utils import create_dataset

    config = Config(model=MODEL, dataset=dataset, config_file_list=config_files)
    _, texts = item_texts(config, create_dataset(config))
    texts = texts[1:n_items + 1]  # skip the padding item
    report = {"part": "embed", "dataset": dataset, "llm": str(config["llm_path"] or "smollm2 (packaged)"),
              "batch_size": config["encoder_batch_size"], "max_text_len": config["max_text_len"],
              "torch_threads": torch.get_num_threads()}
    for device in available_devices():
        name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
        report[device] = dict(embedding_throughput(config, texts, device), device=name)
    return report


def main(argv=None):
    args, extra = build_parser().parse_known_args(argv)
    hand_overrides_to_recbole(extra)
    config_files = args.config_files.split() if args.config_files else None

    def job():
        report = bench_embed(args.dataset, config_files, args.n_items)
        print("BENCH " + json.dumps(report, sort_keys=True))
        return 0

    return run_reporting_user_errors(job)


if __name__ == "__main__":
    sys.exit(main())
