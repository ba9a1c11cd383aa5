"""Unknown config keys are errors (a typo is not a silent default); property files stay
documented."""
import glob
import os
import re
import sys

import pytest

from conftest import REPO_ROOT
from recbole_hymirec.config import Config, properties_dir
from recbole_hymirec.config_keys import (KEYS_OUTSIDE_PROPERTY_FILES, known_keys,
                                         property_file_keys, recbole_properties_dir)
from recbole_hymirec.errors import ConfigError

CONFIG_READ = re.compile(r"(?:config|config_dict|final)\[\s*[\"']([A-Za-z_0-9]+)[\"']\s*\]")
TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*\s*:")
TYPED_COMMENT = re.compile(r"#\s*\((\w+)\)\s+\S")
FIX = ("no property file of RecBole or of recbole_hymirec defines them, so RecBole would ignore "
       "them silently. Fix: correct the spelling (keys are case-sensitive), or set "
       "strict_config_keys: False for the keys of a model of your own.")


def _keys_read_in(folder):
    keys = set()
    for path in glob.glob(os.path.join(folder, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            keys.update(CONFIG_READ.findall(f.read()))
    return keys


def test_misspelt_key_on_the_command_line_names_the_key_and_the_fix(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--rankng_readout=next"])
    with pytest.raises(ConfigError) as err:
        Config("HyMiRec", "ml-100k")
    assert str(err.value) == ("unknown config key(s) 'rankng_readout' (did you mean "
                              f"'ranking_readout'?) on the command line: {FIX}")


def test_misspelt_keys_in_a_file_and_in_config_dict_say_where(tmp_path):
    user_file = tmp_path / "user.yaml"
    user_file.write_text("lerning_rate: 0.01\nepochs: 2\n")
    with pytest.raises(ConfigError, match=r"'lerning_rate' \(did you mean 'learning_rate'\?\) "
                                          r"in the config files"):
        Config("SASRec", "ml-100k", config_file_list=[str(user_file)])
    with pytest.raises(ConfigError, match=r"^unknown config key\(s\) 'qqq_zzz' in config_dict:"):
        Config("SASRec", "ml-100k", config_dict={"hidden_size": 16, "qqq_zzz": 1})


def test_known_keys_of_recbole_and_the_plugin_pass():
    config = Config("HyMiRec", "ml-100k", config_dict={
        "ranking_readout": "next", "dense_loss_weight": 1.0, "learner": "adamw",
        "weight_decay": 0.3, "n_layers": 2, "world_size": 1, "mask_seen_items": True})
    assert config["ranking_readout"] == "next" and config["mask_seen_items"] is True


def test_strict_config_keys_false_lets_a_key_of_ones_own_through():
    config = Config("SASRec", "ml-100k", config_dict={"my_own_key": 3, "strict_config_keys": False})
    assert config["my_own_key"] == 3


def test_every_key_recbole_reads_is_known():
    """RecBole reads keys its property files never define; the constant must list them all
    (a RecBole upgrade that reads a new one fails here, not in a user's run)."""
    import recbole

    read = _keys_read_in(os.path.dirname(recbole.__file__))
    read -= {"choice", "uniform", "quniform", "loguniform"}  # hyperopt's space kinds, not keys
    assert read - property_file_keys(recbole_properties_dir()) - KEYS_OUTSIDE_PROPERTY_FILES == set()


def test_every_key_the_plugin_reads_is_in_a_property_file_or_derived():
    """A hyper-parameter of the plugin lives in a property file, with its comment."""
    read = _keys_read_in(os.path.join(REPO_ROOT, "recbole_hymirec"))
    assert read - known_keys(properties_dir()) == set()


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO_ROOT, "properties", "**",
                                                               "*.yaml"), recursive=True)),
                         ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_every_property_file_key_is_commented_with_its_type(path):
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    keys = [line for line in lines if TOP_LEVEL_KEY.match(line)]
    assert keys, "a property file sets at least one key"
    assert [line for line in keys if not TYPED_COMMENT.search(line)] == []
