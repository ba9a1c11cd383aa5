"""Bad input gets one clear line naming the problem and the fix (more in the per-component
tests: LLM paths, codebook sizes, cache files, checkpoints, CLI values)."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, TINY_RUN, tiny_hymirec_settings
from tiny_llm import make_tiny_llm
from recbole_hymirec.config import Config
from recbole_hymirec.errors import ConfigError, DatasetNotFoundError
from recbole_hymirec.quick_start import run_recbole_hymirec


def _hymirec(tiny_data_path, tmp_path, **overrides):
    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"), **overrides)
    return run_recbole_hymirec("HyMiRec", "tiny", config_dict=settings, saved=False)


def test_cli_reports_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "run_recbole_hymirec.py"),
                           "-m", "SASRec", "-d", "nowhere", f"--data_path={tmp_path}"],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: Dataset 'nowhere' not found")
    assert "Traceback" not in proc.stderr


def test_dataset_without_timestamps(tiny_data_path):
    inter = os.path.join(tiny_data_path, "tiny", "tiny.inter")
    with open(inter) as f:
        rows = [line.rstrip("\n").split("\t")[:3] for line in f]
    with open(inter, "w") as f:
        f.writelines("\t".join(r) + "\n" for r in rows)
    with pytest.raises(DatasetNotFoundError) as info:
        run_recbole_hymirec("SASRec", "tiny", config_dict=dict(
            TINY_RUN, data_path=tiny_data_path,
            load_col={"inter": ["user_id", "item_id", "rating"]}))
    assert str(info.value).startswith("Dataset 'tiny' has no timestamp: field 'timestamp' is not "
                                      "in tiny.inter (fields: ['user_id', 'item_id', 'rating'])")
    assert "Fix: add a 'timestamp:float' column" in str(info.value)


def test_all_item_texts_empty(tiny_data_path, tmp_path):
    item = os.path.join(tiny_data_path, "tiny", "tiny.item")
    with open(item) as f:
        lines = f.read().splitlines()
    with open(item, "w") as f:
        f.write("\n".join([lines[0]] + [l.split("\t")[0] + "\t\t\t" for l in lines[1:]]) + "\n")
    with pytest.raises(ConfigError, match=r"Every item of 'tiny' has an empty text in the fields "
                                          r"\['movie_title', 'release_year', 'class'\]"):
        _hymirec(tiny_data_path, tmp_path)


@pytest.mark.parametrize("key,value,message", [
    ("n_interests", 0, "n_interests=0 must be an integer >= 1"),
    ("dmil_window", 0, "dmil_window=0 must be an integer >= 1"),
    ("codebook_size", 64, "codebook_size=64 is larger than the 30 items"),
    ("long_seq_len", 2, "long_seq_len=2 is shorter than the recent window MAX_ITEM_LIST_LENGTH=4"),
])
def test_out_of_range_model_values(tiny_data_path, tmp_path, key, value, message):
    with pytest.raises(ConfigError) as info:
        _hymirec(tiny_data_path, tmp_path, **{key: value})
    text = str(info.value)
    assert message in text and ("Fix" in text or "Use codebook_size" in text)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ConfigError, match=r"use_gpu=True was requested but torch sees no CUDA "
                                          r"device .*Fix: --use_gpu=False"):
        Config("SASRec", "ml-100k", config_dict={"use_gpu": True})
