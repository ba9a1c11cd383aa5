"""The pages of a leaderboard: rows rendered as a console table, csv, markdown and png, and
the rows themselves kept as json.

For ``--out DIR`` and a dataset ``D``: ``DIR/D.csv`` (every test metric, every best-valid
metric as ``valid_*``), ``DIR/D.md`` (setting, tables, learning curves, the command behind
each row), ``DIR/D.png`` (needs matplotlib) and ``DIR/D.json`` (the rows, which a later run
reuses). A row is ``{"model", "status", "seconds", "command", "result"}``.
"""
import csv
import io
import json
import os
import platform
import shlex
import sys
import time

from recbole_hymirec.atomic import write_atomic
from recbole_hymirec.tools.entries import model_stack, name_without_seed, parse_entry
from recbole_hymirec.tools.seed_summary import row_seed, seed_groups

TABLE_METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "mrr@10", "mrr@20")
DATASET_STATISTICS = ("users", "items", "interactions", "interactions_per_user", "sparsity")
PAGE_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "ndcg@20", "recall@20", "hit@50",
                "itemcoverage@10", "giniindex@10", "averagepopularity@10", "ild@10")
PLOT_NAME_LIMIT = 24  # longer row names (HyMiRec(...) with overrides) show as their number only


def save_rows(path, rows):
    """Keep ``rows`` in ``path`` (json), for a later run to reuse."""
    write_atomic(path, json.dumps(rows, indent=1) + "\n")


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


def format_table(rows):
    header = ["model"] + list(TABLE_METRICS) + ["wall s"]
    lines = [" | ".join(f"{h:>10}" for h in header)]
    for row in rows:
        test = (row["result"] or {}).get("test_result", {})
        cells = [f"{test[m]:>10.4f}" if m in test else f"{'-':>10}" for m in TABLE_METRICS]
        line = " | ".join([f"{row['model']:>10}"] + cells + [f"{row['seconds']:>10.1f}"])
        lines.append(line if row["status"] == "ok" else f"{line}   {row['status']}")
    return "\n".join(lines)


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
                 _md_cell(name_without_seed(members[0]["model"])),
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
        files = model_stack([], per_model, model, r["model"])
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


def pyplot_or_none():
    """matplotlib's pyplot on the file-only Agg backend, or None (and a warning) without
    matplotlib: a page then goes without its png."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("warning: matplotlib is not installed; skipping the png", file=sys.stderr)
        return None
    return plt


def png_bytes(fig, plt):
    """``fig`` laid out, as PNG bytes; the figure is closed."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def render_png(rows, dataset):
    """PNG bytes (test metrics per model; NDCG@10 vs wall time), or None without matplotlib."""
    plt = pyplot_or_none()
    if plt is None:
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
    return png_bytes(fig, plt)


def write_page(out_dir, dataset, rows, command_line, shared, per_model, notes=()):
    base = os.path.join(out_dir, dataset)
    write_atomic(base + ".csv", render_csv(rows))
    write_atomic(base + ".md", render_markdown(rows, dataset, command_line, shared, per_model,
                                               notes))
    png = render_png(rows, dataset)
    if png is not None:
        write_atomic(base + ".png", png)
    print(f"wrote {base}.csv, {base}.md" + (f", {base}.png" if png is not None else ""))
