"""The GPU check's tiny mode (what runs without CUDA): every step on the real code path,
the page and its files written where asked."""
import csv
import json

from recbole_hymirec.tools import efficiency, gpu_check


def test_tiny_mode_runs_every_step_and_writes_the_page(tmp_path, capsys):
    out = tmp_path / "gpu"
    code = gpu_check.main(["--tiny", "--out", str(out), "--work", str(tmp_path / "work")])
    assert code == 0, capsys.readouterr().err[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["tiny"] is True and summary["device"].startswith("cpu (")
    assert summary["dataset"] == "synth-mi" and summary["epochs"] == 1
    assert summary["steps"]["stage1"]["result"]["n_items"] == 60
    assert [r["model"] for r in summary["steps"]["rows"]["result"]] == ["HyMiRec", "SASRec"]
    assert all(r["status"] == "ok" for r in summary["steps"]["rows"]["result"])

    page = (out / "gpu_check.md").read_text()
    assert page.startswith("# GPU check (tiny mode: a smoke test of the code path")
    assert "| HyMiRec ([synth-mi.md](synth-mi.md)) | " in page and "test NDCG@10 0." in page
    assert "full history / HyMiRec at L = 12: " in page
    assert "python -m recbole_hymirec.tools.gpu_check --tiny --out " in page
    with open(out / "efficiency.csv") as f:
        points = list(csv.DictReader(f))
    assert tuple(points[0]) == efficiency.CSV_COLUMNS
    assert sorted({int(p["history_length"]) for p in points}) == [6, 12]
    with open(out / "synth-mi.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["HyMiRec", "SASRec"]
    assert (out / "synth-mi.md").exists() and (out / "efficiency.md").exists()
