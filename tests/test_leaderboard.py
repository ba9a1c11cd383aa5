"""The leaderboard runs each model in its own process; one failure does not stop the rest."""
import csv
import json
import os
import re

import pytest

from conftest import TINY_RUN, tiny_hymirec_settings
from tiny_llm import make_tiny_llm
from recbole_hymirec.tools import entries, leaderboard, pages


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


def test_a_misspelt_override_fails_its_row_by_name(tiny_data_path, tmp_path, capsys):
    """A typo in a row's overrides is that row's error, not a run of the defaults under
    the typo's name."""
    code = leaderboard.main(["-d", "tiny", "-m", "SASRec(hiden_size=8)", "--out", str(tmp_path),
                             f"--data_path={tiny_data_path}"])
    row = capsys.readouterr().out.split("Test metrics on tiny (full ranking)\n")[1].splitlines()[1]
    assert code == 1
    assert row.strip().startswith("SASRec(hiden_size=8)")
    assert "unknown config key(s) 'hiden_size' (did you mean 'hidden_size'?) on the command" in row


def test_model_config_spec_parsing():
    assert leaderboard.model_files(["HyMiRec=a.yaml b.yaml", "SASRec=c.yaml"]) == {
        "HyMiRec": ["a.yaml", "b.yaml"], "SASRec": ["c.yaml"]}


def test_page_files_resume_and_force(tiny_data_path, capsys):
    overrides = [f"--{k}={json.dumps(v)}" for k, v in dict(TINY_RUN, topk=[10, 20]).items()]
    argv = ["-d", "tiny", "-m", "SASRec,NoSuchModel", "--out", "tmp",
            f"--data_path={tiny_data_path}", *overrides]
    assert leaderboard.main(argv) == 1
    capsys.readouterr()
    for ext in ("csv", "md", "png", "json"):
        assert os.path.getsize(f"tmp/tiny.{ext}") > 0
    assert not [f for f in os.listdir("tmp") if f.endswith(".tmp")]  # no temp files left
    assert os.stat("tmp/tiny.md").st_mode & 0o004  # readable by others, unlike mkstemp's 0600

    with open("tmp/tiny.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["SASRec", "NoSuchModel"]
    assert rows[0]["status"] == "ok" and rows[1]["status"].startswith("failed: ")
    assert 0.0 <= float(rows[0]["ndcg@10"]) <= 1.0 and rows[1]["ndcg@10"] == ""
    assert 0.0 <= float(rows[0]["valid_ndcg@10"]) <= 1.0
    first_seconds = rows[0]["seconds"]

    kept = {r["model"]: r for r in json.load(open("tmp/tiny.json"))}
    md = open("tmp/tiny.md").read()
    assert "python -m recbole_hymirec.tools.leaderboard -d tiny -m SASRec,NoSuchModel --out tmp" in md
    assert "| # | model | ndcg@10 | recall@10 |" in md
    assert "| 1 | SASRec | " in md and "| 2 | NoSuchModel | " in md
    assert pages.reproduce_command(kept["SASRec"]) in md
    assert pages.reproduce_command(kept["SASRec"]).startswith("python ")
    assert "-m SASRec -d tiny" in md and "CPUs" in md
    result = kept["SASRec"]["result"]  # one epoch: one evaluation, one training loss
    assert result["valid_curve"] == [[0, result["best_valid_score"]]]
    assert [epoch for epoch, _ in result["train_loss_curve"]] == [0]
    assert result["train_loss_curve"][0][1] > 0
    curves = md.split("## Learning curves")[1].split("## Hyper-parameters")[0]
    assert f"| 1 | e0 **{result['best_valid_score']:.4f}** | e0 " in curves
    assert "| 2 |" not in curves  # the failed row recorded nothing

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


def test_curves_section_bolds_the_best_and_skips_rows_without_curves():
    rising = {"model": "A", "result": {"valid_curve": [[0, 0.05], [1, 0.08], [2, 0.08]],
                                       "train_loss_curve": [[0, 9.5], [1, 8.25], [2, 8.0]],
                                       "best_valid_score": 0.08}}
    old_row = {"model": "B", "result": {"best_valid_score": 0.1}}
    failed = {"model": "C", "result": None}
    lines = pages._curves_section([old_row, rising, failed])
    # a tie keeps the first checkpoint: only the first of the two 0.08 is the tested one
    assert "| 2 | e0 0.0500, e1 **0.0800**, e2 0.0800 | e0 9.5000, e1 8.2500, e2 8.0000 |" in lines
    assert not [line for line in lines if line.startswith(("| 1 |", "| 3 |"))]
    assert pages._curves_section([old_row, failed]) == []  # no section without curves


def test_model_entries_with_overrides():
    listed = entries.split_model_list("HyMiRec, HyMiRec(n_interests=1,dmil_window=1),SASRec")
    assert listed == ["HyMiRec", "HyMiRec(n_interests=1,dmil_window=1)", "SASRec"]
    assert entries.parse_entry(listed[1]) == ("HyMiRec", ["--n_interests=1", "--dmil_window=1"])
    assert entries.parse_entry("SASRec") == ("SASRec", [])
    assert entries.parse_entry("HyMiRec(lora_target_modules=[q_proj,v_proj],lora_r=4)") == (
        "HyMiRec", ["--lora_target_modules=[q_proj,v_proj]", "--lora_r=4"])
    assert entries.merge_overrides(["--epochs=3", "--seed=1"], ["--epochs=8"]) == [
        "--seed=1", "--epochs=8"]


def test_plot_labels_number_rows_and_drop_long_names():
    assert pages.plot_label(2, "SASRec") == "#2 SASRec"
    long_name = "HyMiRec(item_bias=True,use_id_embedding=True)"
    assert pages.plot_label(7, long_name) == "#7"
    assert pages.plot_label(7, long_name, limit=len(long_name)) == f"#7 {long_name}"


def test_tiny_leaderboard_three_models_three_files(tiny_data_path, tmp_path, capsys):
    """The acceptance run in miniature: a protocol file, three models (one a HyMiRec
    ablation), every metric family, and the csv/md/png with one row per model."""
    make_tiny_llm(str(tmp_path / "llm"), arch="llama")
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text("metrics: [Recall, NDCG, MRR, Hit, ItemCoverage, GiniIndex, "
                        "AveragePopularity, ILD]\ntopk: [10, 20]\nvalid_metric: NDCG@10\n")
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"), epochs=1)
    for key in ("metrics", "topk", "valid_metric"):
        settings.pop(key)
    overrides = [f"--{k}={json.dumps(v)}" for k, v in settings.items()]
    models = "SASRec,GRU4Rec,HyMiRec(use_long_history=False)"
    assert leaderboard.main(["-d", "tiny", "-m", models, "--out", "page", "--note", "tiny run",
                             "--config_files", str(protocol), *overrides]) == 0
    capsys.readouterr()

    with open("page/tiny.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["SASRec", "GRU4Rec", "HyMiRec(use_long_history=False)"]
    assert all(r["status"] == "ok" for r in rows)
    for row in rows:
        assert 0.0 < float(row["itemcoverage@10"]) <= 1.0 and 0.0 < float(row["ild@10"]) < 2.0
    assert os.path.getsize("page/tiny.png") > 10_000
    md = open("page/tiny.md").read()
    assert "itemcoverage@10 | giniindex@10 | averagepopularity@10 | ild@10 | trainable params" in md
    assert "| users | items | interactions |" in md and "| 40 | 30 |" in md
    assert protocol.read_text().splitlines()[0] in md  # the protocol, verbatim
    assert "(overrides: `--use_long_history=False`)" in md
    assert md.rstrip().endswith("- tiny run")
    assert "`n_interests=2`" in md and "`hidden_size=" in md  # HyMiRec's and SASRec's settings
    kept = json.load(open("page/tiny.json"))
    ablation = kept[2]["result"]
    assert ablation["hyper_parameters"]["use_long_history"] is False
    assert ablation["trainable_parameters"] < 10**6


def test_seeds_run_every_entry_once_per_seed():
    assert entries.parse_seeds(None) == []
    assert entries.parse_seeds("2020,2021") == [2020, 2021]
    assert entries.entries_per_seed(["SASRec", "M(a=1,b=[p,q])"], [1, 2]) == [
        "SASRec(seed=1)", "SASRec(seed=2)", "M(a=1,b=[p,q],seed=1)", "M(a=1,b=[p,q],seed=2)"]
    assert entries.entries_per_seed(["SASRec"], []) == ["SASRec"]
    assert entries.parse_entry("M(a=1,seed=2)") == ("M", ["--a=1", "--seed=2"])


def test_seeds_refuse_bad_lists_and_a_second_seed(capsys):
    for text, message in [
            ("2020,x", "error: --seeds '2020,x': write comma-separated integers, e.g. --seeds 2020,2021"),
            ("1,1", "error: --seeds '1,1' repeats a seed. Fix: give each seed once")]:
        with pytest.raises(SystemExit, match=re.escape(message)):
            entries.parse_seeds(text)
    with pytest.raises(SystemExit, match=re.escape(
            "error: model entry 'M(seed=3)' sets seed and --seeds is given. Fix: drop one of the two")):
        entries.entries_per_seed(["M(seed=3)"], [1, 2])
    with pytest.raises(SystemExit, match=re.escape(
            "error: --seed=... and --seeds are both given. Fix: drop one of the two")):
        leaderboard.main(["-d", "tiny", "-m", "SASRec", "--seeds", "1,2", "--seed=3"])


def test_seeds_rows_land_in_the_over_seeds_table(monkeypatch, capsys):
    def fake_run(name, command):
        seed = int(next(a for a in command if a.startswith("--seed=")).split("=")[1])
        result = {"best_valid_score": 0.1 * seed,
                  "test_result": {"ndcg@10": 0.01 * seed, "itemcoverage@10": 0.5}}
        return {"model": name, "seconds": 1.0, "command": command[1:], "status": "ok",
                "result": result}
    monkeypatch.setattr(leaderboard, "run_one", fake_run)
    assert leaderboard.main(["-d", "tiny", "-m", "SASRec", "--seeds", "1,3", "--out", "out"]) == 0
    rows = json.load(open("out/tiny.json"))
    assert [r["model"] for r in rows] == ["SASRec(seed=1)", "SASRec(seed=3)"]
    assert [a for a in rows[1]["command"] if a.startswith("--seed")] == ["--seed=3"]
    md = open("out/tiny.md").read()
    assert "| #1, #2 | SASRec | 1, 3 | 0.2000 | 0.0200 (0.0100-0.0300) | 0.5000 |" in md


def test_a_seed_override_is_not_read_as_seeds():
    args, extra = leaderboard.build_parser().parse_known_args(["-m", "SASRec", "--seed=2021"])
    assert args.seeds is None and extra == ["--seed=2021"]
