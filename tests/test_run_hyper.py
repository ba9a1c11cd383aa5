"""Hyper-parameter search: two trials on tiny data, one JSON line per trial."""
import json

from conftest import tiny_hymirec_settings
from tiny_llm import make_tiny_llm
from recbole_hymirec.tools import run_hyper


def test_two_trials_export_valid_and_test(tiny_data_path, tmp_path, capsys):
    make_tiny_llm(str(tmp_path / "llm"))
    fixed = tmp_path / "fixed.yaml"
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"))
    fixed.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in settings.items()) + "\n")
    space = tmp_path / "space.hyper"
    space.write_text("n_interests choice [1,2]\n")
    out = tmp_path / "trials.jsonl"
    assert run_hyper.main(["-m", "HyMiRec", "-d", "tiny", "--params_file", str(space),
                           "--config_files", str(fixed), "--output_file", str(out)]) == 0
    trials = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(t["params"] for t in trials) == ["n_interests:1", "n_interests:2"]
    assert all({"ndcg@10", "recall@10"} <= set(t["test_result"]) for t in trials)
    hyper = json.loads([l for l in capsys.readouterr().out.splitlines()
                        if l.startswith("HYPER ")][-1][len("HYPER "):])
    assert hyper["trials"] == 2
    best = max(trials, key=lambda t: t["best_valid_result"]["ndcg@10"])
    assert hyper["best_valid_score"] == best["best_valid_result"]["ndcg@10"]
