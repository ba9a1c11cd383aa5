"""The one-command GPU check: HyMiRec's cost curve, stage 1 and a short training on CUDA.

    python -m recbole_hymirec.tools.gpu_check [--out results/gpu] [--epochs 1] [--llm_path FILE] [--tiny]

On one CUDA GPU, in a few minutes:

1. stage 1 (item embeddings and codebook) on its own, timed;
2. the cost-versus-history-length curve (``python -m recbole_hymirec.tools.efficiency``) on
   CUDA, HyMiRec at its GPU budget (``properties/presets/hymirec_gpu.yaml``: every LLM layer);
3. HyMiRec at its full budget (``hymirec_tuned.yaml`` then ``hymirec_gpu.yaml``: every SmolLM2
   layer, bf16, every training prefix) and SASRec beside it, ``--epochs`` epochs each, on
   ml-100k under the seen-masked protocol (``ml-100k.yaml`` + ``mask_seen.yaml``); each row
   runs in its own process, as the leaderboard runs its rows.

Writes into ``--out``: ``gpu_check.md`` (the device, the versions, the command, what each step
took and its numbers), ``gpu_check.json``, ``efficiency.{md,csv,png}`` and the rows' page
``ml-100k.{md,csv,png}``.

Without CUDA, or with ``--tiny``, the same steps run in a tiny mode: a tiny random LLM, a
40-user synthetic dataset (written under ``--work``), short histories, small batches. It checks
the code path (CI runs it); its numbers measure nothing.
"""
import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from types import SimpleNamespace

import torch

from recbole_hymirec.atomic import write_atomic
from recbole_hymirec.cli import hand_overrides_to_recbole, run_reporting_user_errors
from recbole_hymirec.property_files import properties_dir
from recbole_hymirec.tools import efficiency, leaderboard
from recbole_hymirec.tools.pages import write_page
from recbole_hymirec.tools.serving import device_name

DATASET = "ml-100k"
PROTOCOL = ("benchmark/ml-100k.yaml", "benchmark/mask_seen.yaml", "presets/baselines_ml-100k.yaml")
HYMIREC_PRESETS = ("presets/hymirec_tuned.yaml", "presets/hymirec_gpu.yaml")
MODELS = ("HyMiRec", "SASRec")
# the tiny mode's sizes: per model (SASRec refuses HyMiRec's keys), and of the curve
TINY_SIZES = {
    "HyMiRec": {"codebook_size": 8, "long_seq_len": 12, "MAX_ITEM_LIST_LENGTH": 4,
                "n_interests": 2, "n_coarse_interests": 2, "light_hidden_size": 16,
                "embedding_size": 16, "train_batch_size": 64, "eval_batch_size": 64},
    "SASRec": {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1,
               "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 64, "eval_batch_size": 64},
}
CURVE = {"cuda": {"lengths": "50,100,200,500,1000", "batch": 256, "single_rows": 10},
         "tiny": {"lengths": "6,12", "batch": 8, "single_rows": 2}}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/gpu",
                        help="folder of the page (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of each row")
    parser.add_argument("--llm_path", default=None,
                        help="the LLM file or folder (default: the packaged SmolLM2)")
    parser.add_argument("--tiny", action="store_true",
                        help="the tiny mode, also chosen when there is no CUDA device")
    parser.add_argument("--work", default=None,
                        help="folder for the tiny mode's data and LLM (default: a temp folder)")
    return parser


def property_file(relative):
    """A property file's path, relative to the working directory when it lies inside it."""
    path = os.path.join(properties_dir(), relative)
    inside = os.path.relpath(path)
    return path if inside.startswith("..") else inside


def overrides_of(settings):
    """``{key: value}`` -> ``--key=value`` words (JSON for what is not a string)."""
    return [f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]


# ----------------------------------------------------------------------------- the setting

def plan(args):
    """What this run does: ``SimpleNamespace(tiny, dataset, settings per model, ...)``."""
    tiny = args.tiny or not torch.cuda.is_available()
    shared = {"epochs": args.epochs, "show_progress": False}
    if args.llm_path:
        shared["llm_path"] = args.llm_path
    per_model = {name: {} for name in MODELS}
    dataset = DATASET
    if tiny:
        from recbole_hymirec.tools.smoke_assets import (SMOKE_DATASET, write_tiny_dataset,
                                                        write_tiny_llm)

        work = args.work or tempfile.mkdtemp(prefix="gpu_check_")
        write_tiny_dataset(os.path.join(work, "data"))
        # every row's ILD metric reads the same LLM's item embeddings: the tiny one here
        shared.update(data_path=os.path.join(work, "data"), use_gpu=False,
                      llm_path=write_tiny_llm(os.path.join(work, "llm")))
        per_model = {name: dict(TINY_SIZES[name]) for name in MODELS}
        dataset = SMOKE_DATASET
    return SimpleNamespace(tiny=tiny, device="cpu" if tiny else "cuda", dataset=dataset,
                           shared=shared, per_model=per_model)


# ----------------------------------------------------------------------------- the steps

def timed(step):
    """``(step(), seconds)``."""
    start = time.perf_counter()
    result = step()
    return result, round(time.perf_counter() - start, 1)


def run_curve(setting, out):
    """The efficiency curve on the run's device, written to ``out/efficiency.*``."""
    sizes = CURVE["tiny" if setting.tiny else "cuda"]
    curve_args = SimpleNamespace(dataset=setting.dataset, repeats=2, budget_s=60.0, **sizes)
    settings = dict(setting.shared, **setting.per_model["HyMiRec"])
    settings.pop("long_seq_len", None)  # the curve sets it to each length
    settings.pop("epochs")
    files = [property_file(HYMIREC_PRESETS[-1])]
    curve = efficiency.efficiency_curve(curve_args, files, setting.device, settings)
    command = "python -m recbole_hymirec.tools.efficiency " + shlex.join(
        ["-d", setting.dataset, "--config_files", " ".join(files), "--lengths", sizes["lengths"],
         "--batch", str(sizes["batch"]), "--single_rows", str(sizes["single_rows"]),
         *overrides_of(settings)])
    efficiency.write_curve(os.path.join(out, "efficiency"), curve, command)
    return curve


def run_stage1(setting):
    from recbole_hymirec.tools.stage1 import run_stage1 as stage1_stats

    files = [property_file(f) for f in PROTOCOL + HYMIREC_PRESETS]
    return stage1_stats(setting.dataset, files,
                        dict(setting.shared, **setting.per_model["HyMiRec"]))


def run_rows(setting):
    """SASRec and HyMiRec, each in its own process: the leaderboard's rows."""
    shared = [property_file(f) for f in PROTOCOL]
    rows = []
    for name in MODELS:
        files = shared + ([property_file(f) for f in HYMIREC_PRESETS] if name == "HyMiRec" else [])
        overrides = overrides_of(dict(setting.shared, **setting.per_model[name]))
        rows.append(leaderboard.run_one(name, leaderboard.build_command(
            name, setting.dataset, files, overrides)))
    return rows, shared


# ----------------------------------------------------------------------------- the page

def versions():
    import recbole
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "recbole": recbole.__version__}


def _ndcg(row):
    return ((row.get("result") or {}).get("test_result") or {}).get("ndcg@10")


def render_markdown(summary):
    tiny = " (tiny mode: a smoke test of the code path, not a measurement)"
    lines = [f"# GPU check{tiny if summary['tiny'] else ''}", "",
             f"- device: {summary['device']}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items()),
             f"- dataset: {summary['dataset']}; epochs per row: {summary['epochs']}", "",
             "| step | seconds | result |", "|---|---:|---|"]
    steps = summary["steps"]
    stage1 = steps["stage1"]["result"]
    lines.append(f"| stage 1 | {steps['stage1']['seconds']} | {stage1['n_items']} items, "
                 f"reconstruction cosine {stage1['recon_cos_mean']:.3f}, cache hit "
                 f"{stage1['cache_hit']} |")
    curve = steps["curve"]
    lines.append(f"| cost curve ([efficiency.md](efficiency.md)) | {curve['seconds']} | "
                 f"{curve['result']} |")
    for row in steps["rows"]["result"]:
        ndcg = _ndcg(row)
        result = f"test NDCG@10 {ndcg:.4f}" if ndcg is not None else row["status"]
        lines.append(f"| {row['model']} ([{summary['dataset']}.md]({summary['dataset']}.md)) | "
                     f"{row['seconds']} | {result} |")
    lines += ["", f"Total: {summary['seconds']} s.", "", "## Command", "", "```bash",
              summary["command"], "```", ""]
    return "\n".join(lines)


def curve_summary(curve):
    """``"full/HyMiRec at L = 500: 6.1× (batch 1), 9.0× (batch 256)"`` for the page's table."""
    table = efficiency.by_length(curve["points"])
    length = 500 if 500 in table else max(table)
    pair = table[length]
    ratios = [f"{pair['full_history'][c] / pair['HyMiRec'][c]:.1f}× ({label})"
              for c, label in (("ms_per_user_batch_1", "batch 1"),
                               ("ms_per_user_batch_n", f"batch {pair['HyMiRec']['batch']}"))]
    return f"full history / HyMiRec at L = {length}: " + ", ".join(ratios)


def run_check(args, command_line):
    os.makedirs(args.out, exist_ok=True)
    setting = plan(args)
    start = time.perf_counter()
    stage1, stage1_seconds = timed(lambda: run_stage1(setting))  # first: no cache yet
    curve, curve_seconds = timed(lambda: run_curve(setting, args.out))
    (rows, shared), rows_seconds = timed(lambda: run_rows(setting))
    write_page(args.out, setting.dataset, rows, command_line, shared,
               {"HyMiRec": [property_file(f) for f in HYMIREC_PRESETS]})
    summary = {"device": device_name(setting.device), "tiny": setting.tiny,
               "dataset": setting.dataset, "epochs": args.epochs, "versions": versions(),
               "command": command_line, "seconds": round(time.perf_counter() - start, 1),
               "steps": {"stage1": {"seconds": stage1_seconds, "result": stage1},
                         "curve": {"seconds": curve_seconds, "result": curve_summary(curve)},
                         "rows": {"seconds": rows_seconds, "result": rows}}}
    write_atomic(os.path.join(args.out, "gpu_check.json"), json.dumps(summary, indent=1) + "\n")
    write_atomic(os.path.join(args.out, "gpu_check.md"), render_markdown(summary))
    print(f"wrote {args.out}/gpu_check.md ({summary['device']}, {summary['seconds']} s)")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    hand_overrides_to_recbole([])  # RecBole's Config must not read this command's own flags
    command_line = "python -m recbole_hymirec.tools.gpu_check " + shlex.join(argv)
    return run_reporting_user_errors(lambda: run_check(args, command_line))


if __name__ == "__main__":
    sys.exit(main())
