"""The results index: headlines from leaderboard rows, the generated blocks, the hook."""
import json
import os

import pytest

from conftest import REPO_ROOT
from recbole_hymirec.tools import results_index

README = "# Project\n\n<!-- demo:begin -->\nold demo\n<!-- demo:end -->\n\n" \
         "<!-- results:begin -->\nold table\n<!-- results:end -->\n\nEnd.\n"


def row(model, valid, test, coverage=0.3, seconds=10.0):
    """A finished leaderboard row; ``seed=`` in the name becomes the row's --seed override."""
    name, _, inside = model.partition("(")
    overrides = [f"--{o}" for o in inside.rstrip(")").split(",") if o]
    return {"model": model, "seconds": seconds, "status": "ok",
            "command": ["run_recbole_hymirec.py", "-m", name, "-d", "tiny", *overrides],
            "result": {"best_valid_score": valid, "device": "cpu (2 threads)",
                       "test_result": {"ndcg@10": test, "itemcoverage@10": coverage,
                                       "ndcg@20": test + 0.01, "recall@10": 0.2,
                                       "recall@20": 0.3, "mrr@10": 0.05, "mrr@20": 0.06}}}


def write_page(folder, dataset, rows, order=None):
    """``folder/dataset.{json,md}``; the md's results table lists ``order`` (default: rows)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{dataset}.json"), "w") as f:
        json.dump(rows, f)
    table = ["| # | model | ndcg@10 | status |", "|---:|---|---:|---|"]
    table += [f"| {n} | {r['model']} | 0.1 | ok |" for n, r in enumerate(order or rows, 1)]
    with open(os.path.join(folder, f"{dataset}.md"), "w") as f:
        f.write("# Leaderboard\n\n- shared config files: `p.yaml`\n"
                "- machine: `Linux`, 2 CPUs; training device: cpu\n\n" + "\n".join(table) + "\n")


SEEDED_ROWS = [
    row("SASRec", 0.20, 0.10),                      # one seed, best valid of all baselines
    row("SASRec(epochs=10,seed=2020)", 0.15, 0.10),
    row("SASRec(epochs=10,seed=2021)", 0.15, 0.08),
    row("HyMiRec(seed=2020)", 0.12, 0.11, coverage=0.5),
    row("HyMiRec(seed=2021)", 0.12, 0.06, coverage=0.4),
    row("HyMiRec(a=1)", 0.30, 0.20),                # one seed, best valid of all HyMiRec rows
]


def test_headline_takes_the_configuration_with_the_most_seeds_then_the_best_valid():
    result = results_index.headline(SEEDED_ROWS)
    hymirec, baseline = result["hymirec"], result["baseline"]
    assert (hymirec["name"], hymirec["rows"], hymirec["seeds"]) == ("HyMiRec", [4, 5],
                                                                   ["2020", "2021"])
    assert (baseline["name"], baseline["rows"]) == ("SASRec(epochs=10)", [2, 3])
    assert hymirec["test"] == pytest.approx(0.085) and baseline["test"] == pytest.approx(0.09)
    assert hymirec["coverage"] == pytest.approx(0.45)
    assert result["ratio"] == pytest.approx(0.085 / 0.09)
    assert result["per_seed"] == pytest.approx({"2020": 1.1, "2021": 0.75})


def test_headline_of_single_seed_rows_is_the_best_valid_row():
    result = results_index.headline([row("SASRec", 0.10, 0.09), row("GRU4Rec", 0.12, 0.05),
                                     row("HyMiRec", 0.08, 0.04), row("SASRec", 0.5, 0.5) | {
                                         "status": "failed"}])
    assert result["baseline"]["name"] == "GRU4Rec" and result["ratio"] == pytest.approx(0.8)
    assert result["per_seed"] == {"2020": pytest.approx(0.8)}


def test_headline_cells_name_a_missing_side():
    page = {"link": "synthetic/x.md", "headline": results_index.headline([row("HyMiRec", 0.1, 0.01)])}
    cells = results_index.headline_cells(page, "results/")
    assert cells[0] == "[synthetic/x](results/synthetic/x.md)"
    assert cells[2] == "no baseline row" and cells[3] == "-"


def test_rows_are_numbered_as_on_the_page(tmp_path):
    rows = [row("SASRec", 0.1, 0.1), row("HyMiRec", 0.2, 0.05), row("Kept", 0.3, 0.3)]
    write_page(str(tmp_path), "tiny", rows, order=[rows[1], rows[0]])  # Kept is not on the page
    (page,) = results_index.find_pages(str(tmp_path))
    assert [r["model"] for r in page["rows"]] == ["HyMiRec", "SASRec"]
    assert page["headline"]["hymirec"]["rows"] == [1]
    assert page["machine"] == "`Linux`, 2 CPUs; training device: cpu"
    assert page["protocol"] == "`p.yaml`"


def test_replace_block_keeps_the_rest_and_names_missing_markers():
    text = results_index.replace_block(README, "results", "| new |")
    assert "<!-- results:begin -->\n| new |\n<!-- results:end -->" in text
    assert text.startswith("# Project") and text.endswith("End.\n") and "old demo" in text
    with pytest.raises(SystemExit, match=r"x.md has no '<!-- demo:begin -->' \.\.\. "
                                         r"'<!-- demo:end -->' block\. Fix: put the two markers"):
        results_index.replace_block("no markers", "demo", "body", "x.md")


def test_demo_block_is_filled_from_a_demo_page(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    demo = tmp_path / "demo.json"
    demo.write_text(json.dumps([row("HyMiRec", 0.02, 0.0198, seconds=300.0),
                                row("SASRec", 0.02, 0.0183, seconds=164.0)]))
    results = tmp_path / "results"
    write_page(str(results), "tiny", SEEDED_ROWS)
    results_index.refresh(str(results), str(readme), str(demo))
    text = readme.read_text()
    block = text[text.index("<!-- demo:begin -->"):text.index("<!-- demo:end -->")]
    assert "| HyMiRec | 0.0198 | 0.0298 | 0.2000 |" in block and "| 300 |" in block
    assert "| SASRec | 0.0183 |" in block
    assert "7 min 44 s of training and testing in all, device: cpu (2 threads)" in block
    assert "old" not in text and "[tiny](results/tiny.md)" in text
    index = (results / "README.md").read_text()
    assert "| [tiny](tiny.md) | HyMiRec #4, #5: 0.0850 (coverage 0.450) |" in index
    assert "2 shared seeds: per seed 0.75-1.10x, HyMiRec ahead in 1" in index


def test_check_reports_a_stale_block(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    results = tmp_path / "results"
    write_page(str(results), "tiny", SEEDED_ROWS)
    argv = ["--results", str(results), "--readme", str(readme)]
    assert results_index.main(argv + ["--check"]) == 1
    assert "differ from the pages. Fix: python -m recbole_hymirec.tools.results_index" in \
        capsys.readouterr().err
    assert results_index.main(argv) == 0
    assert results_index.main(argv + ["--check"]) == 0


def test_the_committed_readme_and_index_follow_the_pages():
    assert results_index.main(["--check"]) == 0


def test_the_leaderboard_hook_refreshes_only_pages_under_results(tmp_path, monkeypatch):
    monkeypatch.setattr(results_index, "REPO_ROOT", str(tmp_path))
    (tmp_path / "README.md").write_text(README)
    write_page(str(tmp_path / "results" / "sub"), "tiny", SEEDED_ROWS)
    results_index.refresh_after_page(str(tmp_path / "saved" / "demo"))
    assert "old table" in (tmp_path / "README.md").read_text()
    results_index.refresh_after_page(str(tmp_path / "results" / "sub"))
    assert "[sub/tiny](results/sub/tiny.md)" in (tmp_path / "README.md").read_text()
    assert (tmp_path / "results" / "README.md").is_file()
