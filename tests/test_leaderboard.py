"""The leaderboard runs each model in its own process; one failure does not stop the rest."""
import json

from conftest import TINY_RUN
from recbole_hymirec import leaderboard


def test_side_by_side_table_with_a_failing_row(tiny_data_path, capsys):
    overrides = [f"--{k}={json.dumps(v)}" for k, v in dict(TINY_RUN, topk=[10, 20]).items()]
    code = leaderboard.main(["-d", "tiny", "-m", "NoSuchModel,SASRec",
                             f"--data_path={tiny_data_path}", *overrides])
    out = capsys.readouterr().out
    table = out.split("Test metrics on tiny (full ranking)\n")[1].splitlines()
    assert code == 1
    assert table[0].split()[:3] == ["model", "|", "ndcg@10"]
    failed, ok = table[1], table[2]
    assert failed.strip().startswith("NoSuchModel") and "failed: error: Unknown model" in failed
    assert ok.strip().startswith("SASRec") and "failed" not in ok
    assert all(0.0 <= float(c) <= 1.0 for c in ok.split("|")[1:7])


def test_model_config_spec_parsing():
    assert leaderboard.model_files(["HyMiRec=a.yaml b.yaml", "SASRec=c.yaml"]) == {
        "HyMiRec": ["a.yaml", "b.yaml"], "SASRec": ["c.yaml"]}


def test_page_files_resume_and_force(tiny_data_path, capsys):
    import csv
    import os

    overrides = [f"--{k}={json.dumps(v)}" for k, v in dict(TINY_RUN, topk=[10, 20]).items()]
    argv = ["-d", "tiny", "-m", "SASRec,NoSuchModel", "--out", "tmp",
            f"--data_path={tiny_data_path}", *overrides]
    assert leaderboard.main(argv) == 1
    capsys.readouterr()
    for ext in ("csv", "md", "png", "json"):
        assert os.path.getsize(f"tmp/tiny.{ext}") > 0
    assert not [f for f in os.listdir("tmp") if f.endswith(".tmp")]  # no temp files left

    with open("tmp/tiny.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["SASRec", "NoSuchModel"]
    assert rows[0]["status"] == "ok" and rows[1]["status"].startswith("failed: ")
    assert 0.0 <= float(rows[0]["ndcg@10"]) <= 1.0 and rows[1]["ndcg@10"] == ""
    assert 0.0 <= float(rows[0]["valid_ndcg@10"]) <= 1.0
    first_seconds = rows[0]["seconds"]

    kept = {r["model"]: r for r in json.load(open("tmp/tiny.json"))}
    md = open("tmp/tiny.md").read()
    assert "python -m recbole_hymirec.leaderboard -d tiny -m SASRec,NoSuchModel --out tmp" in md
    assert "| model | ndcg@10 | ndcg@20 |" in md
    assert "| SASRec | " in md and "| NoSuchModel | " in md
    assert leaderboard.reproduce_command(kept["SASRec"]) in md
    assert leaderboard.reproduce_command(kept["SASRec"]).startswith("python ")
    assert "-m SASRec -d tiny" in md and "CPUs" in md

    # Second run: the ok row is reused, the failed one re-runs.
    assert leaderboard.main(argv) == 1
    out = capsys.readouterr().out
    assert "SASRec on tiny: reusing the ok row" in out
    assert "=== NoSuchModel on tiny ===" in out
    assert "RESULT " not in out  # SASRec's process did not run again
    with open("tmp/tiny.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["seconds"] == first_seconds
    assert json.load(open("tmp/tiny.json"))[0] == kept["SASRec"]

    # --force re-runs it.
    assert leaderboard.main(["-d", "tiny", "-m", "SASRec", "--out", "tmp", "--force",
                             f"--data_path={tiny_data_path}", *overrides]) == 0
    out = capsys.readouterr().out
    assert "reusing" not in out and "=== SASRec on tiny ===" in out and "RESULT " in out
    rerun = {r["model"]: r for r in json.load(open("tmp/tiny.json"))}
    assert rerun["SASRec"]["status"] == "ok" and rerun["NoSuchModel"]["status"] != "ok"
    with open("tmp/tiny.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["SASRec"]
