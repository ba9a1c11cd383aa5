"""The benchmark prints one BENCH line with the measured throughput (no timing asserted)."""
import json

import pytest

from conftest import tiny_hymirec_settings
from tiny_llm import make_tiny_llm
from recbole_hymirec.model import llm
from recbole_hymirec.tools import bench


def test_embed_bench_prints_one_line(tiny_data_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(llm, "cpu_flags", lambda: {"avx512_bf16"})  # auto = bf16 on any CPU
    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"))
    argv = ["-d", "tiny", "--part", "embed", "--n_items", "12"] + [
        f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
    assert bench.main(argv) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("BENCH ")]
    report = json.loads(lines[-1][len("BENCH "):])
    assert report["part"] == "embed" and "serve" not in report
    cpu = report["embed"]["cpu"]
    assert cpu["items"] == 12 and cpu["precision_auto"] == "bf16"
    for key in ("embed_items_per_s_fp32", "embed_items_per_s_auto", "embed_speedup_auto"):
        assert isinstance(cpu[key], float) and cpu[key] > 0, key
    assert cpu["embed_speedup_auto"] == pytest.approx(
        cpu["embed_items_per_s_auto"] / cpu["embed_items_per_s_fp32"], rel=0.02)


def test_serve_bench_compares_hybrid_with_full_history(tiny_data_path, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.setattr(llm, "cpu_flags", lambda: {"avx2"})  # auto = fp32 on any CPU
    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"), codebook_layers=3)
    argv = ["-d", "tiny", "--part", "serve", "--batch", "16", "--single_rows", "3",
            "--train_steps", "2"] + [
        f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
    assert bench.main(argv) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("BENCH ")]
    assert len(lines) == 1
    cpu = json.loads(lines[0][len("BENCH "):])["serve"]["cpu"]
    assert cpu["device"].startswith("cpu (")
    for variant in ("hybrid_ms_per_user", "full_history_ms_per_user"):
        assert set(cpu[variant]) == {"batch_1", "batch_16"}
        assert all(v > 0 for v in cpu[variant].values())
    assert cpu["speedup"]["batch_1"] == pytest.approx(
        cpu["full_history_ms_per_user"]["batch_1"] / cpu["hybrid_ms_per_user"]["batch_1"], abs=0.01)
    history = cpu["bytes_per_history"]
    assert history["codes_per_item"] == 3  # three uint8 codes
    assert history["fp32_per_item"] == 4 * 32  # the tiny LLM's hidden size, fp32
    assert 0 < history["mean_items_per_history"] <= settings["long_seq_len"]
    assert history["ratio"] == pytest.approx(128 / 3, abs=0.1)
    assert cpu["train_rows_per_s"] > 0 and cpu["peak_memory_mib"] > 0
    assert cpu["precision_auto"] == "fp32"
    for key in ("train_rows_per_s_fp32", "train_rows_per_s_auto", "train_speedup_auto"):
        assert isinstance(cpu[key], float) and cpu[key] > 0, key
    assert cpu["train_rows_per_s"] == cpu["train_rows_per_s_auto"]
    assert cpu["train_speedup_auto"] == pytest.approx(
        cpu["train_rows_per_s_auto"] / cpu["train_rows_per_s_fp32"], rel=0.02)


def test_serve_bench_gives_each_variant_the_history_it_reads(tiny_data_path, tmp_path, capsys,
                                                            monkeypatch):
    """With coarse_history: before_window the hybrid rows carry the history before the window;
    the full_history variant reads the history up to the target, and gets it."""
    monkeypatch.setattr(llm, "cpu_flags", lambda: {"avx2"})
    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"),
                                     coarse_history="before_window", dense_loss_weight=1.0)
    argv = ["-d", "tiny", "--part", "serve", "--batch", "8", "--single_rows", "2",
            "--train_steps", "1"] + [
        f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
    assert bench.main(argv) == 0, capsys.readouterr().err
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("BENCH "))
    cpu = json.loads(line[len("BENCH "):])["serve"]["cpu"]
    assert set(cpu["full_history_ms_per_user"]) == {"batch_1", "batch_8"}
    assert all(v > 0 for v in cpu["full_history_ms_per_user"].values())


def test_bench_line_carries_the_curve(tiny_data_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(llm, "cpu_flags", lambda: {"avx2"})
    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"))
    del settings["long_seq_len"]  # the curve sets it to each length
    argv = ["-d", "tiny", "--part", "curve", "--lengths", "5,9", "--batch", "4",
            "--single_rows", "1", "--repeats", "1"] + [
        f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
    assert bench.main(argv) == 0, capsys.readouterr().err
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("BENCH "))
    report = json.loads(line[len("BENCH "):])
    assert set(report) >= {"curve"} and "serve" not in report and "embed" not in report
    points = report["curve"]["cpu"]["points"]
    assert [(p["history_length"], p["model"]) for p in points] == [
        (5, "HyMiRec"), (5, "full_history"), (9, "HyMiRec"), (9, "full_history")]
