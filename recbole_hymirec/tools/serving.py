"""What the serving measurements share (``bench``, ``efficiency``): the test rows and the
HyMiRec variants they rank, one timed full ranking, turns between variants, and memory.

Memory: on CUDA the allocator's statistics; on the CPU the process's resident memory, whose
peak (VmHWM) Linux resets when 5 is written to ``/proc/self/clear_refs``.
"""
import resource
import statistics
import time

import torch

MODEL = "HyMiRec"


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def available_devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def ranking_ms(model, rows, device):
    """Milliseconds of one full ranking of ``rows``."""
    sync(device)
    start = time.perf_counter()
    model.full_sort_predict(rows)
    sync(device)
    return (time.perf_counter() - start) * 1000.0


def ranking_ms_and_memory(model, rows, device):
    """``(ms, MiB)`` of one full ranking of ``rows``: its time, and how far memory rose above
    what was in use before it (CUDA: allocated; CPU: the process's resident peak)."""
    before = memory_in_use_mib(device)
    reset_peak_memory(device)
    ms = ranking_ms(model, rows, device)
    peak = peak_memory_since_reset_mib(device)
    return ms, None if peak is None else round(max(peak - before, 0.0), 1)


@torch.no_grad()
def interleaved_latency(runs, single_rows, device, repeats=2, budget_s=None):
    """Per-user ms of full ranking of each ``runs`` entry ``{name: (model, rows)}``.

    ``batch_1``: the median over ``single_rows`` rows ranked one at a time; ``batch_<B>``:
    the best of ``repeats`` rankings of the ``B`` rows together, divided by ``B``. The entries
    take turns on every measurement, so a busy spell of a shared machine slows them all, not
    one. With ``budget_s``, an entry whose batch would take longer (estimated from its batch-1
    time) ranks only its first rows (``rows`` says how many). ``memory_mib`` is the most
    memory one batched ranking took above what was in use before it.
    """
    for model, rows in runs.values():
        model.eval()
        ranking_ms(model, rows[:1], device)  # warm-up
    single = {name: [] for name in runs}
    for i in range(single_rows):
        for name, (model, rows) in runs.items():
            single[name].append(ranking_ms(model, rows[i % len(rows):i % len(rows) + 1], device))
    report = {name: {"batch_1": round(statistics.median(ms), 3)} for name, ms in single.items()}
    batched = {name: (model, rows[:_rows_within(budget_s, report[name]["batch_1"], len(rows))])
               for name, (model, rows) in runs.items()}
    best = {name: (float("inf"), 0.0) for name in runs}
    for _ in range(max(repeats, 1)):
        for name, (model, rows) in batched.items():
            ms, mib = ranking_ms_and_memory(model, rows, device)
            best[name] = (min(best[name][0], ms), max(best[name][1], mib or 0.0))
    for name, (model, rows) in runs.items():
        n_rows = len(batched[name][1])
        report[name].update({f"batch_{len(rows)}": round(best[name][0] / n_rows, 3),
                             "rows": n_rows, "memory_mib": best[name][1]})
    return report


def _rows_within(budget_s, single_ms, n_rows):
    """Rows whose batched ranking fits ``budget_s`` at ``single_ms`` per row (a batch costs at
    most that per row), all ``n_rows`` without a budget; at least one."""
    if budget_s is None or single_ms <= 0:
        return n_rows
    return max(1, min(n_rows, int(budget_s * 1000.0 / single_ms)))


def peak_memory_mib(device):
    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _proc_status_mib(key):
    """A ``/proc/self/status`` memory line in MiB (Linux), None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            line = next(l for l in f if l.startswith(key + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024  # kB


def memory_in_use_mib(device):
    if device == "cuda":
        return torch.cuda.memory_allocated() / 2**20
    return _proc_status_mib("VmRSS") or 0.0


def reset_peak_memory(device):
    """Start a new peak: CUDA's allocator statistics, or the process's resident high-water
    mark (Linux; writing 5 to clear_refs resets VmHWM to the current RSS)."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # peak_memory_since_reset_mib then reports the peak since the start


def peak_memory_since_reset_mib(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return _proc_status_mib("VmHWM")


def _first_rows(test_data, n):
    """The first ``n`` rows of the test loader (on the CPU, where the history table is)."""
    batch = next(iter(test_data))
    batch = batch[0] if isinstance(batch, tuple) else batch
    return batch[:n].to("cpu")


def rows_read_by(config, dataset, rows):
    """``rows`` with the history fields a model under ``config`` reads, as its own loaders
    would attach them: variants of one model may read different ones (with ``coarse_history:
    before_window`` HyMiRec reads the history before its window, its ``refiner_reads:
    full_history`` variant the history up to the target)."""
    from recbole.data.interaction import Interaction

    from recbole_hymirec.data.transform import UserHistoryTransform

    transform = UserHistoryTransform(config, training=False, base=lambda _, batch: batch)
    copy = Interaction(rows.interaction)  # a new field dict: ``rows`` stays as it is
    return transform(dataset, copy).to(config["device"])


def build_model(config_files, dataset_name, dataset, settings):
    """``(HyMiRec under config_files + settings, its config)``."""
    from recbole_hymirec.config import Config
    from recbole_hymirec.utils import get_model

    config = Config(model=MODEL, dataset=dataset_name, config_file_list=config_files,
                    config_dict=settings)
    return get_model(MODEL)(config, dataset).to(config["device"]), config


def serve_setting(device, batch):
    """The config keys of a serving measurement on ``device`` (latencies use ``auto``)."""
    return {"use_gpu": device == "cuda", "eval_batch_size": batch, "show_progress": False,
            "precision": "auto"}


def serve_data(device, config_files, dataset_name, batch, settings=None):
    """``(config, train_data, test rows [batch] on the CPU)`` of a serving measurement, under
    ``serve_setting`` and the config keys ``settings``."""
    from recbole_hymirec.config import Config
    from recbole_hymirec.utils import create_dataset, data_preparation

    config = Config(model=MODEL, dataset=dataset_name, config_file_list=config_files,
                    config_dict=dict(serve_setting(device, batch), **(settings or {})))
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    return config, train_data, _first_rows(test_data, batch)


def device_name(device):
    return (torch.cuda.get_device_name(0) if device == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")
