"""Evaluating a saved checkpoint again, with ranking-time overrides."""
import json
import os

import pytest

from conftest import tiny_hymirec_settings
from recbole_hymirec.quick_start import run_recbole_hymirec
from recbole_hymirec.tools import evaluate


@pytest.fixture(scope="module")
def trained(assets):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    result = run_recbole_hymirec("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(
        data_path, llm_path, dense_loss_weight=1.0, coarse_history="before_window", epochs=2))
    # each test runs in a folder of its own (conftest): keep the path valid there
    return dict(result, saved_model_file=os.path.abspath(result["saved_model_file"]))


def _eval_line(capsys, argv):
    capsys.readouterr()
    assert evaluate.main(argv) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("EVAL ")][-1]
    return json.loads(line[len("EVAL "):])


def test_checkpoint_evaluates_to_the_results_of_its_run(trained, capsys):
    report = _eval_line(capsys, [trained["saved_model_file"]])
    assert report["overrides"] == {}
    assert report["test_result"] == trained["test_result"]
    assert report["valid_result"] == trained["best_valid_result"]


def test_ranking_readout_override_changes_the_ranking_only(trained, capsys):
    base = _eval_line(capsys, [trained["saved_model_file"]])
    report = _eval_line(capsys, [trained["saved_model_file"], "--ranking_readout=next"])
    assert report["overrides"] == {"ranking_readout": "next"}
    assert set(report["test_result"]) == set(base["test_result"])
    assert report["test_result"] != base["test_result"]  # another readout, another ranking


def test_unknown_key_and_bad_value_are_one_line_errors(trained, capsys):
    assert evaluate.main([trained["saved_model_file"], "--ranking_redout=next"]) == 2
    assert ("unknown config key(s) ['ranking_redout'] for HyMiRec" in capsys.readouterr().err)
    assert evaluate.main([trained["saved_model_file"], "--ranking_readout=last"]) == 2
    assert "ranking_readout='last' is not one of" in capsys.readouterr().err
    assert evaluate.main(["saved/none.pth"]) == 2
    assert "checkpoint 'saved/none.pth' does not exist" in capsys.readouterr().err
