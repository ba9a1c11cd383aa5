"""The benchmark prints one BENCH line with the measured throughput (no timing asserted)."""
import json

from conftest import tiny_hymirec_settings
from tiny_llm import make_tiny_llm
from recbole_hymirec import bench


def test_embed_bench_prints_one_line(tiny_data_path, tmp_path, capsys, monkeypatch):
    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"))
    argv = ["-d", "tiny", "--n_items", "12"] + [
        f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
    assert bench.main(argv) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("BENCH ")]
    report = json.loads(lines[-1][len("BENCH "):])
    assert report["part"] == "embed" and report["cpu"]["items"] == 12
    assert report["cpu"]["items_per_s"] > 0 and report["cpu"]["dtype"] == "float32"
