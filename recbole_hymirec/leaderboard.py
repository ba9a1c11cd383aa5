"""Several models, one protocol, one table.

    python -m recbole_hymirec.leaderboard -d ml-100k -m HyMiRec,SASRec \
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
import csv
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time

from recbole_hymirec.cli import split_overrides
from recbole_hymirec import results_index
from recbole_hymirec.presets import last_preset, missing_budget_keys
from recbole_hymirec.seed_summary import row_seed, seed_groups

REPO_CLI = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "run_recbole_hymirec.py")
TABLE_METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "mrr@10", "mrr@20")
DATASET_STATISTICS = ("users", "items", "interactions", "interactions_per_user", "sparsity")
PAGE_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "ndcg@20", "recall@20", "hit@50",
                "itemcoverage@10", "giniindex@10", "averagepopularity@10", "ild@10")
FAILURE_LIMIT = 400  # characters of a failed row's error line kept in its status
PLOT_NAME_LIMIT = 24  # longer row names (HyMiRec(...) with overrides) show as their number only


def build_parser():
    # allow_abbrev=False: RecBole's --seed=N override must not be read as an abbreviated --seeds
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--models", "-m", default="HyMiRec,SASRec", help="comma-separated")
    parser.add_argument("--config_files", default=None, help="shared (protocol) YAML files")
    parser.add_argument("--model_config", action="append", default=[],
                        help="MODEL=file.yaml: extra files for one model (repeatable)")
    parser.add_argument("--out", default="results",
                        help="folder for DATASET.{csv,md,png,json} (default: results)")
    parser.add_argument("--note", action="append", default=[],
                        help="a remark for the page's Note section (repeatable)")
    parser.add_argument("--force", action="store_true",
                        help="re-run models that already have an ok row in DIR/DATASET.json")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds: every model entry runs once per seed")
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


def split_model_list(text):
    """``"A,B(x=1,y=[p,q]),C"`` -> ``["A", "B(x=1,y=[p,q])", "C"]`` (commas inside brackets kept)."""
    entries, depth, current = [], 0, ""
    for char in text:
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth == 0:
            entries.append(current.strip())
            current = ""
        else:
            current += char
    entries.append(current.strip())
    return [e for e in entries if e]


def parse_entry(entry):
    """``"HyMiRec(n_interests=1,dmil_window=1)"`` -> ``("HyMiRec", ["--n_interests=1", ...])``."""
    model, bracket, rest = entry.partition("(")
    if not bracket:
        return entry, []
    if not rest.endswith(")") or not model.strip():
        raise SystemExit(f"error: model entry {entry!r}: write MODEL or MODEL(key=value,...)")
    pairs = split_model_list(rest[:-1])
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise SystemExit(f"error: model entry {entry!r}: {bad[0]!r} is not key=value. Fix: "
                         "write MODEL(key=value,key=value)")
    return model.strip(), [f"--{p}" for p in pairs]


def parse_seeds(text):
    """``"2020,2021"`` -> ``[2020, 2021]``; ``None`` -> ``[]`` (the protocol's own seed)."""
    if text is None:
        return []
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"error: --seeds {text!r}: write comma-separated integers, "
                         "e.g. --seeds 2020,2021") from None
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: --seeds {text!r} repeats a seed. Fix: give each seed once")
    return seeds


def entries_per_seed(entries, seeds):
    """Every entry once per seed, an entry's seeds next to each other: ``["S", "M(a=1)"],
    [1, 2]`` -> ``["S(seed=1)", "S(seed=2)", "M(a=1,seed=1)", "M(a=1,seed=2)"]``."""
    if not seeds:
        return list(entries)
    expanded = []
    for entry in entries:
        model, own = parse_entry(entry)
        if "--seed" in {_override_key(o) for o in own}:
            raise SystemExit(f"error: model entry {entry!r} sets seed and --seeds is given. "
                             "Fix: drop one of the two")
        pairs = [o[len("--"):] for o in own]
        expanded += [f"{model}({','.join(pairs + [f'seed={seed}'])})" for seed in seeds]
    return expanded


def _echo_and_keep(stream, sink, kept):
    for line in iter(stream.readline, ""):
        sink.write(line)
        sink.flush()
        kept.append(line)


def _override_key(override):
    return override.split("=", 1)[0]


def merge_overrides(shared, own):
    """Shared ``--key=value`` overrides, with a variant's own value winning for its keys
    (RecBole refuses a key given twice on the command line)."""
    own_keys = {_override_key(o) for o in own}
    return [o for o in shared if _override_key(o) not in own_keys] + list(own)


def _cli_path():
    """The CLI relative to the working directory when it is inside it (portable commands)."""
    relative = os.path.relpath(REPO_CLI)
    return REPO_CLI if relative.startswith("..") else relative


def model_stack(shared, per_model, model):
    """The config files of ``model``'s command, in load order (a later file wins): the
    shared files, then the model's own ``--model_config`` files."""
    return list(shared) + list(per_model.get(model, []))


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


def format_table(rows):
    header = ["model"] + list(TABLE_METRICS) + ["wall s"]
    lines = [" | ".join(f"{h:>10}" for h in header)]
    for row in rows:
        test = (row["result"] or {}).get("test_result", {})
        cells = [f"{test[m]:>10.4f}" if m in test else f"{'-':>10}" for m in TABLE_METRICS]
        line = " | ".join([f"{row['model']:>10}"] + cells + [f"{row['seconds']:>10.1f}"])
        lines.append(line if row["status"] == "ok" else f"{line}   {row['status']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- output files

def write_atomic(path, data):
    """Write ``data`` (str or bytes) to ``path`` through a temp file in the same folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a page is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_rows(path):
    """Rows kept by an earlier run (``[]`` when there are none or the file is unreadable)."""
    try:
        with open(path) as f:
            rows = json.load(f)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        print(f"warning: ignoring unreadable {path}: {err}", file=sys.stderr)
        return []
    return [r for r in rows if isinstance(r, dict) and "model" in r] if isinstance(rows, list) else []


def _metrics(rows, key):
    """Metric names found under ``result[key]``: the table's order first, then the rest sorted."""
    names = {m for r in rows for m in ((r.get("result") or {}).get(key) or {})}
    return [m for m in TABLE_METRICS if m in names] + sorted(names - set(TABLE_METRICS))


def _get(row, key, metric):
    return ((row.get("result") or {}).get(key) or {}).get(metric)


def render_csv(rows):
    test, valid = _metrics(rows, "test_result"), _metrics(rows, "best_valid_result")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "status", "seconds", *test, *(f"valid_{m}" for m in valid)])
    for r in rows:
        values = [_get(r, "test_result", m) for m in test]
        values += [_get(r, "best_valid_result", m) for m in valid]
        writer.writerow([r["model"], r["status"], r["seconds"],
                         *("" if v is None else v for v in values)])
    return buf.getvalue()


def reproduce_command(row):
    return "python " + shlex.join(row["command"])


def _md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _first(rows, key):
    return next(((r.get("result") or {}).get(key) for r in rows
                 if (r.get("result") or {}).get(key)), None)


def _read_text(path):
    try:
        with open(path) as f:
            return f.read().rstrip("\n")
    except OSError as err:
        return f"# could not read {path}: {err}"


def _dataset_section(rows):
    stats = _first(rows, "dataset_statistics")
    if not stats:
        return []
    names = [n for n in DATASET_STATISTICS if n in stats] + sorted(set(stats) - set(DATASET_STATISTICS))
    return ["## Dataset", "",
            "| " + " | ".join(names) + " |", "|" + "---:|" * len(names),
            "| " + " | ".join(str(stats[n]) for n in names) + " |", ""]


def _protocol_section(shared):
    lines = ["## Protocol (shared by every model)", ""]
    for path in shared:
        lines += [f"`{path}`:", "", "```yaml", _read_text(path), "```", ""]
    return lines if shared else lines + ["(no shared config files: RecBole's defaults)", ""]


def _results_table(rows):
    test = _metrics(rows, "test_result")
    shown = [m for m in PAGE_METRICS if m in test] or test
    lines = ["## Test metrics (full ranking)", "",
             "| # | model | " + " | ".join(shown + ["trainable params", "wall s", "status"]) + " |",
             "|---:|---|" + "---:|" * (len(shown) + 2) + "---|"]
    for number, r in enumerate(rows, 1):
        cells = [f"{v:.4f}" if isinstance(v, (int, float)) else "-"
                 for v in (_get(r, "test_result", m) for m in shown)]
        params = (r.get("result") or {}).get("trainable_parameters")
        cells += [f"{params:,}" if isinstance(params, int) else "-", f"{r['seconds']:.1f}",
                  _md_cell(r["status"])]
        lines.append(f"| {number} | {_md_cell(r['model'])} | " + " | ".join(cells) + " |")
    return lines + ["", "Every metric (test and best valid) is in the csv next to this page; "
                    "the png labels each row by its number (`#`).", ""]


def _mean(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else None


def _mean_cell(values):
    mean = _mean(values)
    return "-" if mean is None else f"{mean:.4f}"


def _name_without_seed(entry):
    """``HyMiRec(a=1,seed=2021)`` -> ``HyMiRec(a=1)``; ``SASRec(seed=2021)`` -> ``SASRec``."""
    model, own = parse_entry(entry)
    kept = [o[2:] for o in own if _override_key(o) != "--seed"]
    return f"{model}({','.join(kept)})" if kept else model


def _seeds_section(rows, metric="ndcg@10", coverage="itemcoverage@10"):
    """The configurations run under two or more seeds: mean best valid score, mean test
    ``metric`` with its range over the seeds, mean test ``coverage`` (no section if none)."""
    groups = seed_groups(rows)
    if not groups:
        return []
    lines = ["## Over seeds", "",
             "Rows whose commands differ only in `seed`: the mean best valid score, the mean "
             f"test {metric} with its range over the seeds, and the mean test {coverage}.", "",
             f"| rows | model | seeds | valid (mean) | test {metric} (mean, min-max) "
             f"| test {coverage} (mean) |",
             "|---|---|---|---:|---:|---:|"]
    for numbers, members in groups:
        results = [r["result"] for r in members]
        tests = [v for v in (res["test_result"].get(metric) for res in results)
                 if isinstance(v, (int, float))]
        spread = f" ({min(tests):.4f}-{max(tests):.4f})" if tests else ""
        cells = [", ".join(f"#{n}" for n in numbers),
                 _md_cell(_name_without_seed(members[0]["model"])),
                 ", ".join(str(row_seed(r)) for r in members),
                 _mean_cell(res.get("best_valid_score") for res in results),
                 _mean_cell(tests) + spread,
                 _mean_cell(res["test_result"].get(coverage) for res in results)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _curve_cell(curve, best=None):
    """``[[epoch, value], ...]`` -> ``"e0 0.0649, e1 **0.0801**"``: the first evaluation that
    reached ``best`` in bold (early stopping keeps the first of equal scores)."""
    first_best = next((i for i, (_, value) in enumerate(curve) if value == best), None)
    return ", ".join(f"e{epoch} **{value:.4f}**" if i == first_best else f"e{epoch} {value:.4f}"
                     for i, (epoch, value) in enumerate(curve))


def _curves_section(rows):
    """Valid score after each evaluation and training loss per epoch, for the rows that
    recorded them: whether a model peaked early or was still rising when it stopped."""
    lines = ["## Learning curves", "",
             "The protocol's `valid_metric` after each evaluation (the best, in bold, is the "
             "checkpoint tested) and the training loss of each epoch (`e<epoch>`; a resumed "
             "run lists the epochs of its last process). Rows without curves have none in "
             "the page's json.", "",
             "| # | valid score per evaluation | training loss per epoch |", "|---:|---|---|"]
    recorded = 0
    for number, r in enumerate(rows, 1):
        result = r.get("result") or {}
        if not result.get("valid_curve") and not result.get("train_loss_curve"):
            continue
        recorded += 1
        valid = _curve_cell(result.get("valid_curve") or [], result.get("best_valid_score"))
        loss = _curve_cell(result.get("train_loss_curve") or [])
        lines.append(f"| {number} | {valid or '-'} | {loss or '-'} |")
    return lines + [""] if recorded else []


def _hyper_parameter_section(rows, per_model):
    lines = ["## Hyper-parameters", ""]
    for r in rows:
        model, own = parse_entry(r["model"])
        files = per_model.get(model, [])
        lines.append(f"- **{_md_cell(r['model'])}**"
                     + (f" (files: {', '.join(f'`{f}`' for f in files)})" if files else "")
                     + (f" (overrides: `{' '.join(own)}`)" if own else ""))
        values = (r.get("result") or {}).get("hyper_parameters")
        if values:
            lines.append("  " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in values.items()))
    return lines + [""]


def render_markdown(rows, dataset, command_line, shared, per_model, notes=()):
    device = _first(rows, "device") or "-"
    lines = [f"# Leaderboard: {dataset}", "",
             "Produced by:", "", "```", command_line, "```", "",
             "## Setting", "",
             f"- dataset: `{dataset}`",
             "- models: " + (", ".join(f"`{r['model']}`" for r in rows) or "(none)"),
             f"- shared config files: {', '.join(f'`{f}`' for f in shared) or '(none)'}",
             f"- machine: `{platform.platform()}`, {os.cpu_count()} CPUs; training device: {device}",
             ""]
    lines += _dataset_section(rows) + _protocol_section(shared) + _results_table(rows)
    lines += _seeds_section(rows)
    lines += _curves_section(rows)
    lines += _hyper_parameter_section(rows, per_model)
    lines += ["## Reproduce a row", ""]
    for r in rows:
        lines += [f"{r['model']}:", "", "```", reproduce_command(r), "```", ""]
    lines += ["## Note", "",
              "The numbers come from this run on this machine; wall time includes process "
              "start-up, data loading and (for HyMiRec) stage 1, and depends on the machine. "
              "Rows kept from an earlier invocation (see `DATASET.json`) were produced by the "
              "command shown for that row.", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    return "\n".join(lines)


def plot_label(number, model, limit=PLOT_NAME_LIMIT):
    """``#3 SASRec``, or ``#3`` alone for a name too long to print (the page's table keys it)."""
    return f"#{number} {model}" if len(model) <= limit else f"#{number}"


def _bar_groups(axis, rows, metrics):
    """Grouped bars: one group per model, one bar per metric (failed rows stay empty)."""
    width = 0.8 / len(metrics)
    for i, metric in enumerate(metrics):
        values = [_get(r, "test_result", metric) or 0.0 for r in rows]
        axis.bar([x + (i - (len(metrics) - 1) / 2) * width for x in range(len(rows))], values,
                 width=width, label=metric)
    axis.set_xticks(range(len(rows)))
    axis.set_xticklabels([plot_label(n, r["model"]) for n, r in enumerate(rows, 1)],
                         rotation=30, ha="right", fontsize=8)
    axis.margins(y=0.2)  # headroom above the tallest bar for the legend
    axis.legend(fontsize=8, ncol=len(metrics), loc="upper left")


def render_png(rows, dataset):
    """PNG bytes (test metrics per model; NDCG@10 vs wall time), or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib is not installed; skipping the png", file=sys.stderr)
        return None
    fig, (accuracy, coverage, scatter) = plt.subplots(1, 3, figsize=(16, 4.8))
    _bar_groups(accuracy, rows, ["ndcg@10", "recall@10", "mrr@10"])
    accuracy.set_title(f"Accuracy on {dataset} (test, full ranking)")
    beyond = [m for m in ("itemcoverage@10", "ild@10", "giniindex@10")
              if any(_get(r, "test_result", m) is not None for r in rows)]
    if beyond:
        _bar_groups(coverage, rows, beyond)
    coverage.set_title("Coverage and diversity @10")
    for number, r in enumerate(rows, 1):
        v = _get(r, "test_result", "ndcg@10")
        if v is not None:
            scatter.scatter(r["seconds"], v)
            scatter.annotate(plot_label(number, r["model"]), (r["seconds"], v),
                             textcoords="offset points", xytext=(4, 4), fontsize=7)
    scatter.set_xlabel("wall time (s)")
    scatter.set_ylabel("NDCG@10 (test)")
    scatter.set_title("NDCG@10 vs wall time")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_page(out_dir, dataset, rows, command_line, shared, per_model, notes=()):
    base = os.path.join(out_dir, dataset)
    write_atomic(base + ".csv", render_csv(rows))
    write_atomic(base + ".md", render_markdown(rows, dataset, command_line, shared, per_model,
                                               notes))
    png = render_png(rows, dataset)
    if png is not None:
        write_atomic(base + ".png", png)
    print(f"wrote {base}.csv, {base}.md" + (f", {base}.png" if png is not None else ""))


# ---------------------------------------------------------------- main

def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = build_parser().parse_known_args(argv)
    overrides = split_overrides(extra)
    seeds = parse_seeds(args.seeds)
    if seeds and "--seed" in {_override_key(o) for o in overrides}:
        raise SystemExit("error: --seed=... and --seeds are both given. Fix: drop one of the two")
    shared = args.config_files.split() if args.config_files else []
    per_model = model_files(args.model_config)
    command_line = "python -m recbole_hymirec.leaderboard " + shlex.join(argv)
    store = os.path.join(args.out, f"{args.dataset}.json")
    kept = {r["model"]: r for r in load_rows(store)}
    rows = []
    for name in entries_per_seed(split_model_list(args.models), seeds):
        model, own_overrides = parse_entry(name)
        files = model_stack(shared, per_model, model)
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
        write_atomic(store, json.dumps(list(kept.values()), indent=1) + "\n")  # resumable
    print(f"\nTest metrics on {args.dataset} (full ranking)\n{format_table(rows)}")
    write_page(args.out, args.dataset, rows, command_line, shared, per_model, args.note)
    results_index.refresh_after_page(args.out)  # the README's results table and results/README.md
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
