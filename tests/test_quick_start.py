"""End to end through the plugin's entry points on a tiny dataset, full ranking."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, TINY_RUN
from recbole_hymirec.quick_start import (load_data_and_model, objective_function,
                                         run_recbole_hymirec, unique_checkpoint_file)

EXPECTED_KEYS = {f"{m}@{k}" for m in ("recall", "ndcg", "mrr", "hit") for k in (5, 10)}


def _cli(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "run_recbole_hymirec.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def _overrides(config):
    return [f"--{k}={v!r}" if not isinstance(v, (int, float)) else f"--{k}={v}"
            for k, v in config.items()]


def test_cli_sasrec_one_epoch_prints_result_line(tiny_data_path, tmp_path):
    proc = _cli("-m", "SASRec", "-d", "tiny", f"--data_path={tiny_data_path}",
                *_overrides(TINY_RUN), cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result_lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert len(result_lines) == 1
    result = json.loads(result_lines[0][len("RESULT "):])
    assert result["model"] == "SASRec" and result["dataset"] == "tiny"
    assert set(result["test_result"]) == EXPECTED_KEYS
    assert set(result["best_valid_result"]) == EXPECTED_KEYS
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
    assert "ndcg@10" in proc.stdout.split("RESULT ")[0]  # the metrics table
    assert os.path.isfile(result["saved_model_file"])


def test_cli_unknown_model_is_one_clear_line():
    proc = _cli("-m", "NoSuchModel", cwd=os.getcwd())
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: Unknown model 'NoSuchModel'. Plugin models:")
    assert "Traceback" not in proc.stderr and "lightgbm" not in proc.stderr


def test_cli_rejects_space_separated_override():
    proc = _cli("-m", "SASRec", "--epochs", "1", cwd=os.getcwd())
    assert proc.returncode != 0
    assert "config overrides are written --key=value" in proc.stderr


def test_missing_dataset_names_expected_files(tmp_path):
    from recbole_hymirec.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError) as info:
        run_recbole_hymirec("SASRec", "nothere", config_dict={"data_path": str(tmp_path)})
    message = str(info.value)
    assert f"expected RecBole atomic files in '{tmp_path / 'nothere'}'" in message
    assert "nothere.inter" in message and "--data_path=FOLDER" in message


def test_checkpoint_reload_gives_identical_scores(tiny_data_path):
    """Best-model reload inside fit/evaluate (torch >= 2.6) and load_data_and_model agree."""
    from recbole.trainer import Trainer

    result = run_recbole_hymirec("SASRec", "tiny",
                                 config_dict=dict(TINY_RUN, data_path=tiny_data_path, epochs=2))
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    assert config["model"] == "SASRec"
    reloaded = Trainer(config, model).evaluate(test_data, load_best_model=False)
    assert {k: round(float(v), 4) for k, v in reloaded.items()} == result["test_result"]


RELOAD_AND_EVALUATE = (
    "import sys; from recbole.trainer import Trainer;"
    "from recbole_hymirec.quick_start import load_data_and_model;"
    "config, model, _, _, _, test = load_data_and_model(sys.argv[1]);"
    "print('NDCG', Trainer(config, model).evaluate(test, load_best_model=False)['ndcg@10'])"
)


def test_checkpoint_reloads_and_evaluates_in_a_fresh_process(tiny_data_path):
    """No Config is built in that process: RecBole's numpy aliases must still be there."""
    result = run_recbole_hymirec("SASRec", "tiny", config_dict=dict(TINY_RUN, data_path=tiny_data_path))
    run = subprocess.run([sys.executable, "-c", RELOAD_AND_EVALUATE, result["saved_model_file"]],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-1500:]
    ndcg = float([l for l in run.stdout.splitlines() if l.startswith("NDCG ")][-1].split()[1])
    assert ndcg == pytest.approx(result["test_result"]["ndcg@10"], abs=1e-4)


def test_objective_function_serves_hypertuning(tiny_data_path):
    result = objective_function(config_dict=dict(TINY_RUN, model="SASRec", dataset="tiny",
                                                 data_path=tiny_data_path), saved=False)
    assert result["model"] == "SASRec"
    assert set(result["test_result"]) == EXPECTED_KEYS
    assert result["best_valid_score"] == result["best_valid_result"]["ndcg@10"]


def test_corrupted_checkpoint_is_a_clear_error_and_is_left_alone(tiny_data_path, tmp_path):
    from recbole_hymirec.errors import ConfigError

    result = run_recbole_hymirec("SASRec", "tiny",
                                 config_dict=dict(TINY_RUN, data_path=tiny_data_path))
    path = result["saved_model_file"]
    with open(path, "rb") as f:
        head = f.read(1000)
    with open(path, "wb") as f:
        f.write(head)  # truncated
    with pytest.raises(ConfigError) as info:
        load_data_and_model(path)
    assert str(info.value).startswith(f"checkpoint '{path}' is unreadable (")
    assert "it was left as it is" in str(info.value)
    with open(path, "rb") as f:
        assert f.read() == head
    with pytest.raises(ConfigError, match="does not exist"):
        load_data_and_model(str(tmp_path / "missing.pth"))


def test_same_seed_same_result_dict(tiny_data_path):
    runs = [run_recbole_hymirec("SASRec", "tiny", config_dict=dict(TINY_RUN, data_path=tiny_data_path),
                                saved=False) for _ in range(2)]
    for run in runs:
        run.pop("saved_model_file")
    assert runs[0] == runs[1]


def test_stopped_run_resumes_and_never_touches_the_earlier_checkpoint(tiny_data_path):
    first = run_recbole_hymirec("SASRec", "tiny",
                                config_dict=dict(TINY_RUN, data_path=tiny_data_path, epochs=2))
    earlier = first["saved_model_file"]
    with open(earlier, "rb") as f:
        earlier_bytes = f.read()
    resumed = run_recbole_hymirec("SASRec", "tiny", config_dict=dict(
        TINY_RUN, data_path=tiny_data_path, epochs=4, resume=earlier))
    assert set(resumed["test_result"]) == EXPECTED_KEYS
    assert resumed["saved_model_file"] != earlier
    assert os.path.isfile(resumed["saved_model_file"])
    with open(earlier, "rb") as f:
        assert f.read() == earlier_bytes


def test_runs_started_in_the_same_second_get_their_own_checkpoint_files(tmp_path):
    recbole_name = str(tmp_path / "HyMiRec-Dec-03-2026_09-26-32.pth")  # RecBole's, per second
    mine, other = unique_checkpoint_file(recbole_name), unique_checkpoint_file(recbole_name, pid=7)
    assert mine == str(tmp_path / f"HyMiRec-Dec-03-2026_09-26-32-{os.getpid()}.pth")
    assert other != mine
    open(mine, "wb").close()  # a run of this process already wrote it: the next one must not
    assert unique_checkpoint_file(recbole_name) == str(
        tmp_path / f"HyMiRec-Dec-03-2026_09-26-32-{os.getpid()}-2.pth")


def test_resume_from_a_missing_checkpoint_is_a_clear_error(tiny_data_path, tmp_path):
    from recbole_hymirec.errors import ConfigError

    with pytest.raises(ConfigError, match=r"checkpoint '.*nope\.pth' does not exist"):
        run_recbole_hymirec("SASRec", "tiny", config_dict=dict(
            TINY_RUN, data_path=tiny_data_path, resume=str(tmp_path / "nope.pth")))


def racing_ensure_dir(path):
    """RecBole's check-then-makedirs with another process creating ``path`` in between."""
    if not os.path.exists(path):
        os.makedirs(path)  # the other process
        os.makedirs(path)  # this one: FileExistsError, as RecBole's ensure_dir hits it


def test_two_runs_starting_at_once_in_a_fresh_folder_do_not_race_on_log_and_saved(
        tiny_data_path, monkeypatch):
    import recbole.utils.logger
    from recbole.utils import init_logger

    from recbole_hymirec.config import Config
    from recbole_hymirec.quick_start import init_run_logger

    monkeypatch.setattr(recbole.utils.logger, "ensure_dir", racing_ensure_dir)
    config = Config(model="SASRec", dataset="tiny",
                    config_dict=dict(TINY_RUN, data_path=tiny_data_path, checkpoint_dir="fresh"))
    with pytest.raises(FileExistsError):
        init_logger(config)  # RecBole's own logger set-up loses the race
    os.rmdir("log")  # back to a fresh folder
    init_run_logger(config)
    assert os.path.isdir(os.path.join("log", "SASRec")) and os.path.isdir("fresh")
