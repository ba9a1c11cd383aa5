"""Cost versus history length: HyMiRec against the same model whose LLM reads the whole history.

    python -m recbole_hymirec.tools.efficiency -d ml-100k --config_files properties/presets/hymirec_cpu.yaml [--lengths 50,100,200,500,1000] [--out results/efficiency] [--key=value ...]

For every history length L, on one device (CUDA when there is one, else the CPU; ``--device``):

* per-user full-ranking latency at batch 1 (median over ``--single_rows`` users ranked one at
  a time) and at batch ``--batch`` of HyMiRec (its lightweight branch reads the L items as
  decoded codes, its LLM reads M + N + K tokens) and of the same model with ``refiner_reads:
  full_history`` (its LLM reads the L items itself); every model (both, at every L) takes
  its turn on every measurement;
* bytes fetched per user: HyMiRec reads the uint8 codes of the L items and the fp32 content
  embeddings of the N recent ones, the full-history model the fp32 embeddings of the L items;
* the memory one batched ranking takes above what was in use before it.

Every row's history holds exactly L items before its target: the user's own items, preceded,
where the user has fewer, by items drawn uniformly from the dataset's catalogue. A batched
ranking that would take longer than ``--budget_s`` (estimated from its batch-1 time) ranks only
its first rows; the ``batch_rows`` column says how many.

Writes OUT.csv, OUT.md and OUT.png (latency against L, log scale) and prints one line
``EFFICIENCY {json}``.
"""
import argparse
import io
import os
import platform
import shlex
import sys

import torch

from recbole_hymirec.atomic import write_atomic
from recbole_hymirec.cli import run_report_command
from recbole_hymirec.data.dataset import TARGET_POSITION_FIELD
from recbole_hymirec.data.transform import (HISTORY_BEFORE_WINDOW_FIELD,
                                            HISTORY_BEFORE_WINDOW_LENGTH_FIELD,
                                            LONG_HISTORY_FIELD, LONG_HISTORY_LENGTH_FIELD)
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.tools.pages import png_bytes, pyplot_or_none
from recbole_hymirec.tools.serving import (build_model, device_name, interleaved_latency,
                                           serve_data, serve_setting)

DEFAULT_LENGTHS = (50, 100, 200, 500, 1000)
VARIANTS = ("HyMiRec", "full_history")  # the model, and the same model whose LLM reads it all
HISTORY_SEED = 2020


def add_curve_arguments(parser):
    """The curve's own options (``bench --part curve`` takes them too)."""
    parser.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)),
                        help="comma-separated history lengths L (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="batched rankings per model and length (the best counts)")
    parser.add_argument("--budget_s", type=float, default=60.0,
                        help="longest batched ranking; a slower one ranks fewer rows")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    add_curve_arguments(parser)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto = CUDA when there is one, else the CPU")
    parser.add_argument("--batch", type=int, default=256, help="rows of the batched latency")
    parser.add_argument("--single_rows", type=int, default=10,
                        help="rows ranked one at a time for the batch-1 latency (median)")
    parser.add_argument("--out", default="results/efficiency",
                        help="writes OUT.csv, OUT.md, OUT.png (default: %(default)s)")
    return parser


def parse_lengths(text):
    """``"50,100"`` -> ``[50, 100]``; a clear error for anything but positive integers."""
    try:
        lengths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 1:
        raise SystemExit(f"error: --lengths {text!r} is not a list of positive integers. "
                         "Fix: --lengths 50,100,200")
    return sorted(set(lengths))


def resolve_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no CUDA device. Fix: --device cpu")
    return name


# ----------------------------------------------------------------------------- histories

def extended_histories(user_history, users, positions, width, n_items, generator):
    """The ``width`` items before each row's target ``[B, width]``, oldest first: the user's
    own, right-aligned, after items drawn uniformly from ids ``1 .. n_items - 1`` that fill
    the slots the user has no item for; and how many are the user's own ``[B]``."""
    own, counts = user_history.history(users, positions, width)  # [B, width] left-aligned, [B]
    slots = torch.arange(width)  # [width]
    missing = (width - counts).unsqueeze(1)  # [B, 1]
    shifted = own.gather(1, (slots - missing).clamp(min=0))  # [B, width] right-aligned
    drawn = torch.randint(1, n_items, own.shape, generator=generator)  # [B, width]
    return torch.where(slots >= missing, shifted, drawn), counts


def rows_with_history(rows, dataset, length, recent, item_seq_fields):
    """``rows`` whose every history field holds exactly ``length`` items: the long history
    (the ``length`` items before the target), the history before the ``recent``-item window,
    and the window itself (RecBole's item sequence); and the share of those ``length + recent``
    items that are the users' own."""
    from recbole.data.interaction import Interaction

    generator = torch.Generator().manual_seed(HISTORY_SEED)
    users, positions = rows[dataset.uid_field], rows[TARGET_POSITION_FIELD]  # [B], [B]
    items, own = extended_histories(dataset.user_history, users, positions, length + recent,
                                    dataset.item_num, generator)  # [B, L + N], [B]
    full = torch.full((len(rows),), length, dtype=torch.long)  # [B]
    seq_field, seq_len_field = item_seq_fields
    fields = {LONG_HISTORY_FIELD: items[:, recent:], LONG_HISTORY_LENGTH_FIELD: full,
              HISTORY_BEFORE_WINDOW_FIELD: items[:, :length],
              HISTORY_BEFORE_WINDOW_LENGTH_FIELD: full,
              seq_field: items[:, length:], seq_len_field: torch.full_like(full, recent)}
    copy = Interaction(rows.interaction)  # a new field dict: ``rows`` stays as it is
    copy.update(Interaction(fields))
    return copy, float(own.sum()) / items.numel()


def bytes_per_user(model, length, recent):
    """Bytes a ranking fetches per user: ``{"HyMiRec": L uint8 codes + N fp32 embeddings,
    "full_history": L fp32 embeddings}``."""
    codes = model.item_codes.shape[1] * model.item_codes.element_size()  # per item
    fp32 = model.item_content.shape[1] * 4  # per item
    return {"HyMiRec": length * codes + recent * fp32, "full_history": length * fp32}


# ----------------------------------------------------------------------------- the curve

def length_runs(length, setup):
    """Both variants at history length ``length``: ``({variant: (model, rows)}, facts)``, the
    facts being the share of the users' own items and the bytes fetched per user."""
    config_files, dataset_name, dataset, rows, settings, device = setup
    hybrid, config = build_model(config_files, dataset_name, dataset,
                                 dict(settings, long_seq_len=length))
    full, _ = build_model(config_files, dataset_name, dataset,
                          dict(settings, long_seq_len=length, refiner_reads="full_history"))
    if config["long_seq_len"] != length:
        raise ConfigError(f"long_seq_len={config['long_seq_len']} is fixed by a --key=value "
                          "override, but the curve sets it to each history length. Fix: drop "
                          "--long_seq_len and give the lengths with --lengths.")
    recent = config["MAX_ITEM_LIST_LENGTH"]
    batch, own_share = rows_with_history(rows, dataset, length, recent,
                                         (hybrid.ITEM_SEQ, hybrid.ITEM_SEQ_LEN))
    batch = batch.to(device)
    facts = {"own_items_share": round(own_share, 3),
             "bytes_per_user": bytes_per_user(hybrid, length, recent)}
    return dict(zip(VARIANTS, ((hybrid, batch), (full, batch)))), facts


def efficiency_curve(args, config_files, device, settings=None):
    """``{"settings": ..., "points": [records]}``: both variants at every length of
    ``args.lengths``, on ``device``, with the config keys ``settings`` on top of the files.

    Every model is built first, then all of them take turns on every measurement (one
    ``interleaved_latency``): a busy spell of the machine slows every length alike, so the
    growth with L is measured under one load."""
    settings = dict(serve_setting(device, args.batch), **(settings or {}))
    config, train_data, rows = serve_data(device, config_files, args.dataset, args.batch,
                                          settings)
    setup = (config_files, args.dataset, train_data._dataset, rows, settings, device)
    runs, facts = {}, {}
    for length in parse_lengths(args.lengths):
        pair, facts[length] = length_runs(length, setup)
        runs.update({(length, name): run for name, run in pair.items()})
    latency = interleaved_latency(runs, args.single_rows, device, args.repeats, args.budget_s)
    points = [{"device": device_name(device), "history_length": length, "model": name,
               "ms_per_user_batch_1": measured["batch_1"],
               "ms_per_user_batch_n": measured[f"batch_{len(rows)}"],
               "batch": len(rows), "batch_rows": measured["rows"],
               "bytes_per_user": facts[length]["bytes_per_user"][name],
               "ranking_memory_mib": measured["memory_mib"],
               "own_items_share": facts[length]["own_items_share"]}
              for (length, name), measured in latency.items()]
    keys = ("llm_num_layers", "MAX_ITEM_LIST_LENGTH", "n_coarse_interests", "n_interests",
            "codebook_layers", "light_layers", "light_hidden_size")
    return {"dataset": args.dataset, "device": device_name(device),
            "precision": resolve_precision_name(config, device),
            "settings": {k: config[k] for k in keys}, "points": points}


def resolve_precision_name(config, device):
    from recbole_hymirec.model.llm import resolve_precision

    return resolve_precision(config["precision"], device)


# ----------------------------------------------------------------------------- the page

CSV_COLUMNS = ("device", "history_length", "model", "ms_per_user_batch_1",
               "ms_per_user_batch_n", "batch", "batch_rows", "bytes_per_user",
               "ranking_memory_mib", "own_items_share")


def render_csv(points):
    import csv

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(points)
    return buf.getvalue()


def by_length(points):
    """``{L: {variant: record}}``."""
    table = {}
    for point in points:
        table.setdefault(point["history_length"], {})[point["model"]] = point
    return table


def _ratio(full, hybrid):
    return f"{full / hybrid:.1f}×" if hybrid else "-"


def _rows_note(point):
    return "" if point["batch_rows"] == point["batch"] else f" ({point['batch_rows']} rows)"


def results_table(points):
    batch = points[0]["batch"]
    lines = [f"| L | HyMiRec batch 1 | full history batch 1 | ratio | HyMiRec batch {batch} | "
             f"full history batch {batch} | ratio | bytes per user (HyMiRec / full) | "
             "ranking memory MiB (HyMiRec / full) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for length, pair in sorted(by_length(points).items()):
        hybrid, full = pair["HyMiRec"], pair["full_history"]
        lines.append(
            f"| {length} | {hybrid['ms_per_user_batch_1']:.2f} | "
            f"{full['ms_per_user_batch_1']:.2f} | "
            f"{_ratio(full['ms_per_user_batch_1'], hybrid['ms_per_user_batch_1'])} | "
            f"{hybrid['ms_per_user_batch_n']:.2f}{_rows_note(hybrid)} | "
            f"{full['ms_per_user_batch_n']:.2f}{_rows_note(full)} | "
            f"{_ratio(full['ms_per_user_batch_n'], hybrid['ms_per_user_batch_n'])} | "
            f"{hybrid['bytes_per_user']:,} / {full['bytes_per_user']:,} | "
            f"{hybrid['ranking_memory_mib']} / {full['ranking_memory_mib']} |")
    return "\n".join(lines)


def growth_lines(points):
    """How each variant's latency grows from the shortest to the longest history."""
    table = by_length(points)
    shortest, longest = min(table), max(table)
    lines = []
    for name in VARIANTS:
        for column, label in (("ms_per_user_batch_1", "batch 1"),
                              ("ms_per_user_batch_n", f"batch {points[0]['batch']}")):
            first, last = table[shortest][name][column], table[longest][name][column]
            lines.append(f"- {name}, {label}: {last / first:.2f}× from L = {shortest} to "
                         f"L = {longest} ({first:.2f} → {last:.2f} ms per user)")
    return lines


def own_shares(points):
    """``"L = 50: 0.93, L = 100: 0.71"``: the share of the users' own items per length."""
    return ", ".join(f"L = {length}: {pair['HyMiRec']['own_items_share']:.2f}"
                     for length, pair in sorted(by_length(points).items()))


def cpu_model():
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def render_markdown(curve, command_line):
    settings = curve["settings"]
    machine = curve["device"]
    if machine.startswith("cpu"):
        machine = f"{cpu_model()}, {os.cpu_count()} cores, {machine}"
    batch = curve["points"][0]["batch"]
    layers = settings["llm_num_layers"]
    llm = f"first {layers} layers" if layers else "all layers"
    lines = [
        f"# Cost versus history length ({curve['dataset']})", "",
        "Per-user full-ranking latency (ms) of HyMiRec (its lightweight branch reads the L "
        f"history items as decoded codes; its LLM ({llm}) reads "
        f"M + N + K = {settings['n_coarse_interests']} + {settings['MAX_ITEM_LIST_LENGTH']} + "
        f"{settings['n_interests']} tokens) and of the same model whose LLM reads the whole "
        "L-item history (`refiner_reads: full_history`, L + K tokens). Models untrained: the "
        "cost does not depend on the weights.", "",
        results_table(curve["points"]), "",
        "Growth with the history:", "", *growth_lines(curve["points"]), "",
        "![latency against history length](efficiency.png)", "",
        "## How it was measured", "",
        f"- machine: {machine}; LLM precision: {curve['precision']}",
        f"- batch 1: median over users ranked one at a time; batch {batch}: the best of the "
        "batched rankings, divided by the rows ranked (a ranking that would exceed the time "
        "budget ranks fewer rows, shown in brackets); every model, both variants at every L, "
        "takes its turn on every measurement, so a busy spell of the shared machine slows "
        "them all alike",
        "- histories: every row holds exactly L items before its target: the user's own "
        f"{curve['dataset']} items, preceded, where the user has fewer, by items drawn "
        f"uniformly from {curve['dataset']}'s catalogue (seed {HISTORY_SEED}); share of the "
        f"users' own items: {own_shares(curve['points'])}",
        "- bytes per user: HyMiRec fetches the L items' uint8 codes "
        f"({settings['codebook_layers']} per item) and the N recent items' fp32 content "
        "embeddings; the full-history model the L items' fp32 content embeddings",
        "- ranking memory: how far memory rose above what was in use before one batched "
        "ranking (CPU: the process's resident peak, VmHWM, reset before it; CUDA: allocated)",
        f"- lightweight branch: {settings['light_layers']} layers, hidden size "
        f"{settings['light_hidden_size']}",
        "", "## Command", "", "```bash", command_line, "```", ""]
    return "\n".join(lines)


def render_png(curve):
    """PNG bytes: latency against L, log scale, both models at both batch sizes; None without
    matplotlib."""
    plt = pyplot_or_none()
    if plt is None:
        return None
    table = by_length(curve["points"])
    lengths = sorted(table)
    batch = curve["points"][0]["batch"]
    fig, axis = plt.subplots(figsize=(7, 4.5))
    for name, colour in zip(VARIANTS, ("tab:blue", "tab:red")):
        for column, style, label in (("ms_per_user_batch_1", "-o", "batch 1"),
                                     ("ms_per_user_batch_n", "--s", f"batch {batch}")):
            axis.plot(lengths, [table[n][name][column] for n in lengths], style, color=colour,
                      label=f"{name}, {label}")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xticks(lengths, [str(n) for n in lengths])
    axis.set_xlabel("history length L (items)")
    axis.set_ylabel("ms per user (full ranking)")
    axis.set_title(f"Ranking cost against history length: {curve['device']}", fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    return png_bytes(fig, plt)


def write_curve(out, curve, command_line):
    """``out.csv``, ``out.md`` and ``out.png`` (with matplotlib), each written atomically."""
    write_atomic(out + ".csv", render_csv(curve["points"]))
    write_atomic(out + ".md", render_markdown(curve, command_line))
    png = render_png(curve)
    if png is not None:
        write_atomic(out + ".png", png)


def run_efficiency(args, config_files, command_line):
    curve = efficiency_curve(args, config_files, resolve_device(args.device))
    write_curve(args.out, curve, command_line)
    return curve


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command_line = "python -m recbole_hymirec.tools.efficiency " + shlex.join(argv)
    return run_report_command(build_parser(), argv, "EFFICIENCY",
                              lambda args, files: run_efficiency(args, files, command_line))


if __name__ == "__main__":
    sys.exit(main())
