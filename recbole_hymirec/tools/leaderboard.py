"""Several models, one protocol, one table.

    python -m recbole_hymirec.tools.leaderboard -d ml-100k -m HyMiRec,SASRec \
        [--config_files "protocol.yaml baselines_preset.yaml"] \
        [--model_config HyMiRec=hymirec_preset.yaml ...] [--key=value ...]

Each model runs in its own process through ``run_recbole_hymirec.py`` with the shared
config files, then its own files from ``--model_config`` (repeated ``--model_config`` of one
model add files in the order given), then the ``--key=value`` overrides; a later file wins.
The shared files are a protocol (``properties/benchmark/``) and the baselines' preset
(``properties/presets/``); a model's own preset comes last and sets every budget key again,
so protocol -> shared preset -> the model's preset, the last preset winning (presets.py).
One failure does not stop the others: its row says why.
The table gives test metrics and wall time per model.

A model entry may carry its own overrides, for ablations: ``-m "HyMiRec,HyMiRec(n_interests=1)"``
runs HyMiRec twice, the second row with ``--n_interests=1`` (several keys: comma-separated
inside the brackets). The entry, brackets included, is the row's name; ``--model_config``
files of the base model apply to its variants too. ``--seeds 2020,2021`` runs every entry
once per seed (``HyMiRec`` becomes ``HyMiRec(seed=2020)`` and ``HyMiRec(seed=2021)``); the
page's "Over seeds" table then gives each configuration's mean and range.

The page goes to ``--out DIR`` (default ``results``): ``DIR/DATASET.csv`` (every test
metric, every best-valid metric as ``valid_*``), ``DIR/DATASET.md`` (setting, table, the
command behind each row) and ``DIR/DATASET.png`` (needs matplotlib). Finished rows are kept
in ``DIR/DATASET.json``: a later run reuses a model's "ok" row when its command is the same
(``--force`` re-runs it); failed rows are always re-run.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time

from recbole_hymirec.cli import split_overrides
from recbole_hymirec.presets import last_preset, missing_budget_keys
from recbole_hymirec.tools.entries import (entries_per_seed, merge_overrides, model_files,
                                           model_stack, override_key, parse_entry, parse_seeds,
                                           split_model_list, unmatched_entry_owners)
from recbole_hymirec.tools import results_index
from recbole_hymirec.tools.pages import format_table, load_rows, save_rows, write_page

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO_CLI = os.path.join(REPO_ROOT, "run_recbole_hymirec.py")
FAILURE_LIMIT = 400  # characters of a failed row's error line kept in its status


def build_parser():
    # allow_abbrev=False: RecBole's --seed=N override must not be read as an abbreviated --seeds
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--models", "-m", default="HyMiRec,SASRec", help="comma-separated")
    parser.add_argument("--config_files", default=None, help="shared (protocol) YAML files")
    parser.add_argument("--model_config", action="append", default=[],
                        help="MODEL=file.yaml: extra files for one model; "
                             "MODEL(key=value,...)=file.yaml: for one entry, after the "
                             "model's (repeatable)")
    parser.add_argument("--out", default="results",
                        help="folder for DATASET.{csv,md,png,json} (default: results)")
    parser.add_argument("--note", action="append", default=[],
                        help="a remark for the page's Note section (repeatable)")
    parser.add_argument("--force", action="store_true",
                        help="re-run models that already have an ok row in DIR/DATASET.json")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds: every model entry runs once per seed")
    return parser


def _echo_and_keep(stream, sink, kept):
    for line in iter(stream.readline, ""):
        sink.write(line)
        sink.flush()
        kept.append(line)


def _cli_path():
    """The CLI relative to the working directory when it is inside it (portable commands)."""
    relative = os.path.relpath(REPO_CLI)
    return REPO_CLI if relative.startswith("..") else relative


def budget_warning(model, files):
    """A warning when a stack holds presets but its last one leaves some of ``model``'s
    budget keys unset (they would come from an earlier preset or the defaults), else None."""
    if last_preset(files) is None:
        return None
    missing = missing_budget_keys(model, files)
    if not missing:
        return None
    return (f"warning: {model}'s last preset {last_preset(files)} sets no {', '.join(missing)}: "
            "those come from an earlier file or the model's defaults. Fix: --model_config "
            f"{model}=PRESET with a preset that sets every budget key of {model}")


def build_command(model, dataset, config_files, overrides):
    command = [sys.executable, _cli_path(), "-m", model, "-d", dataset, *overrides]
    if config_files:
        command[4:4] = ["--config_files", " ".join(config_files)]
    return command


def run_one(name, command):
    """Row for one model: ``{"model", "status", "seconds", "command", "result"}``."""
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
    row = {"model": name, "seconds": round(time.time() - start, 1), "command": command[1:]}
    results = [l for l in out if l.startswith("RESULT ")]
    if proc.returncode == 0 and results:
        return dict(row, status="ok", result=json.loads(results[-1][len("RESULT "):]))
    reason = next((l.strip() for l in reversed(err) if l.strip()), f"exit {proc.returncode}")
    return dict(row, status=f"failed: {_head(reason, FAILURE_LIMIT)}", result=None)


def _head(text, limit):
    """``text`` cut to ``limit`` characters from its start (an error line names the problem
    first, the fix after it), with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = build_parser().parse_known_args(argv)
    overrides = split_overrides(extra)
    seeds = parse_seeds(args.seeds)
    if seeds and "--seed" in {override_key(o) for o in overrides}:
        raise SystemExit("error: --seed=... and --seeds are both given. Fix: drop one of the two")
    shared = args.config_files.split() if args.config_files else []
    per_model = model_files(args.model_config)
    command_line = "python -m recbole_hymirec.tools.leaderboard " + shlex.join(argv)
    store = os.path.join(args.out, f"{args.dataset}.json")
    kept = {r["model"]: r for r in load_rows(store)}
    rows = []
    names = entries_per_seed(split_model_list(args.models), seeds)
    unmatched = unmatched_entry_owners(per_model, names)
    if unmatched:
        raise SystemExit(f"error: --model_config {unmatched[0]}=... matches no entry of --models. "
                         "Fix: write the entry as in --models (e.g. --model_config "
                         "'HyMiRec(epochs=8)=preset.yaml' for -m 'HyMiRec(epochs=8)')")
    for name in names:
        model, own_overrides = parse_entry(name)
        files = model_stack(shared, per_model, model, name)
        warning = budget_warning(model, files)
        if warning:
            print(warning, file=sys.stderr)
        command = build_command(model, args.dataset, files,
                                merge_overrides(overrides, own_overrides))
        old = kept.get(name)
        if old and old.get("status") == "ok" and not args.force:
            if old.get("command") == command[1:]:
                print(f"\n=== {name} on {args.dataset}: reusing the ok row from {store} "
                      f"(--force re-runs it) ===", flush=True)
                rows.append(old)
                continue
            print(f"\n=== {name}: the kept row in {store} was run with another command; "
                  f"re-running ===", flush=True)
        print(f"\n=== {name} on {args.dataset} ===", flush=True)
        row = run_one(name, command)
        rows.append(row)
        kept[name] = row
        save_rows(store, list(kept.values()))  # resumable
    print(f"\nTest metrics on {args.dataset} (full ranking)\n{format_table(rows)}")
    write_page(args.out, args.dataset, rows, command_line, shared, per_model, args.note)
    results_index.refresh_after_page(args.out)  # the README's results table and results/README.md
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
