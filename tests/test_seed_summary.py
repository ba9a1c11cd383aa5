"""Rows that differ only in ``seed`` are summarised together on the leaderboard page."""
from recbole_hymirec.tools import pages
from recbole_hymirec.tools.seed_summary import row_seed, seed_groups


def _row(model, overrides, ndcg, coverage, valid, config_file, status="ok"):
    command = ["run_recbole_hymirec.py", "-m", model.split("(")[0], "--config_files",
               config_file, "-d", "ml-100k", *overrides]
    result = {"best_valid_score": valid,
              "test_result": {"ndcg@10": ndcg, "itemcoverage@10": coverage}}
    return {"model": model, "command": command, "status": status,
            "result": result if status == "ok" else None, "seconds": 1.0}


def test_seed_comes_from_the_override_then_the_files_then_recbole(tmp_path):
    with_seed = tmp_path / "protocol.yaml"
    with_seed.write_text("seed: 7\nepochs: 3\n")
    without = tmp_path / "model.yaml"
    without.write_text("epochs: 2\n")
    assert row_seed(_row("A", [], 0.1, 0.5, 0.1, f"{with_seed} {without}")) == 7
    assert row_seed(_row("A(seed=9)", ["--seed=9"], 0.1, 0.5, 0.1, str(with_seed))) == "9"
    assert row_seed(_row("A", [], 0.1, 0.5, 0.1, str(without))) == 2020
    assert row_seed(_row("A", [], 0.1, 0.5, 0.1, str(tmp_path / "gone.yaml"))) == "?"


def test_only_rows_that_differ_in_seed_alone_are_grouped(tmp_path):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text("seed: 2020\n")
    files = str(protocol)
    rows = [
        _row("M(a=1,b=[p,q])", ["--a=1", "--b=[p,q]"], 0.10, 0.40, 0.12, files),
        _row("M(a=1)", ["--a=1"], 0.30, 0.90, 0.30, files),                     # other config
        _row("M(b=[p,q],a=1,seed=2021)", ["--b=[p,q]", "--a=1", "--seed=2021"], 0.08, 0.50, 0.10, files),
        _row("M(a=1,b=[p,q],seed=2022)", ["--a=1", "--b=[p,q]", "--seed=2022"], 0.0, 0.0, 0.0, files,
             status="failed: exit code 1"),                                      # no result
        _row("S", [], 0.2, 0.6, 0.2, files),
        _row("S(seed=2020)", ["--seed=2020"], 0.2, 0.6, 0.2, files),           # same seed again
    ]
    groups = seed_groups(rows)
    assert [numbers for numbers, _ in groups] == [[1, 3]]
    lines = pages._seeds_section(rows)
    assert lines[0] == "## Over seeds"
    assert "| #1, #3 | M(a=1,b=[p,q]) | 2020, 2021 | 0.1100 | 0.0900 (0.0800-0.1000) | 0.4500 |" in lines
    assert pages._seeds_section(rows[:2]) == []
    page = pages.render_markdown(rows, "ml-100k", "python -m recbole_hymirec.tools.leaderboard",
                                       [], {})
    assert page.index("## Over seeds") > page.index("## Test metrics (full ranking)")
