"""Several models, one protocol, one table.

    python -m recbole_hymirec.leaderboard -d ml-100k -m HyMiRec,SASRec \
        [--config_files "protocol.yaml"] [--model_config HyMiRec=hymirec_cpu.yaml ...] [--key=value ...]

Each model runs in its own process through ``run_recbole_hymirec.py`` with the shared
config files (the protocol), then its own files from ``--model_config``, then the
``--key=value`` overrides. One failure does not stop the others: its row says why.
The table gives test metrics and wall time per model.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

from recbole_hymirec.cli import split_overrides

REPO_CLI = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "run_recbole_hymirec.py")
TABLE_METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "mrr@10", "mrr@20")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--models", "-m", default="HyMiRec,SASRec", help="comma-separated")
    parser.add_argument("--config_files", default=None, help="shared (protocol) YAML files")
    parser.add_argument("--model_config", action="append", default=[],
                        help="MODEL=file.yaml: extra files for one model (repeatable)")
    return parser


def model_files(specs):
    """``["HyMiRec=a.yaml b.yaml"]`` -> ``{"HyMiRec": ["a.yaml", "b.yaml"]}``."""
    files = {}
    for spec in specs:
        model, sep, paths = spec.partition("=")
        if not sep or not paths.strip():
            raise SystemExit(f"error: --model_config {spec!r}: write MODEL=file.yaml")
        files.setdefault(model.strip(), []).extend(paths.split())
    return files


def _echo_and_keep(stream, sink, kept):
    for line in iter(stream.readline, ""):
        sink.write(line)
        sink.flush()
        kept.append(line)


def run_one(model, dataset, config_files, overrides):
    """Row for one model: ``{"model", "status", "seconds", "result"}``."""
    command = [sys.executable, REPO_CLI, "-m", model, "-d", dataset, *overrides]
    if config_files:
        command[4:4] = ["--config_files", " ".join(config_files)]
    start = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = [], []
    readers = [threading.Thread(target=_echo_and_keep, args=(proc.stdout, sys.stdout, out)),
               threading.Thread(target=_echo_and_keep, args=(proc.stderr, sys.stderr, err))]
    for reader in readers:
        reader.start()
    proc.wait()
    for reader in readers:
        reader.join()
    row = {"model": model, "seconds": round(time.time() - start, 1), "command": command[1:]}
    results = [l for l in out if l.startswith("RESULT ")]
    if proc.returncode == 0 and results:
        return dict(row, status="ok", result=json.loads(results[-1][len("RESULT "):]))
    reason = next((l.strip() for l in reversed(err) if l.strip()), f"exit {proc.returncode}")
    return dict(row, status=f"failed: {reason[-200:]}", result=None)


def format_table(rows):
    header = ["model"] + list(TABLE_METRICS) + ["wall s"]
    lines = [" | ".join(f"{h:>10}" for h in header)]
    for row in rows:
        test = (row["result"] or {}).get("test_result", {})
        cells = [f"{test[m]:>10.4f}" if m in test else f"{'-':>10}" for m in TABLE_METRICS]
        line = " | ".join([f"{row['model']:>10}"] + cells + [f"{row['seconds']:>10.1f}"])
        lines.append(line if row["status"] == "ok" else f"{line}   {row['status']}")
    return "\n".join(lines)


def main(argv=None):
    args, extra = build_parser().parse_known_args(argv)
    overrides = split_overrides(extra)
    shared = args.config_files.split() if args.config_files else []
    per_model = model_files(args.model_config)
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"\n=== {model} on {args.dataset} ===", flush=True)
        rows.append(run_one(model, args.dataset, shared + per_model.get(model, []), overrides))
    print(f"\nTest metrics on {args.dataset} (full ranking)\n{format_table(rows)}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
