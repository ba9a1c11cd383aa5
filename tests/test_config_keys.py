"""Unknown config keys are errors (a typo is not a silent default); property files stay
documented."""
import glob
import os
import re
import sys

import pytest
import yaml

from conftest import REPO_ROOT
from recbole_hymirec.cli import ARGV_OVERRIDES_ENV
from recbole_hymirec.config import Config, properties_dir
from recbole_hymirec.config_keys import (KEYS_OUTSIDE_PROPERTY_FILES, REMOVED_KEYS, known_keys,
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
    monkeypatch.setenv(ARGV_OVERRIDES_ENV, "1")  # a command of the plugin set sys.argv
    monkeypatch.setattr(sys, "argv", ["prog", "--rankng_readout=next"])
    with pytest.raises(ConfigError) as err:
        Config("HyMiRec", "ml-100k")
    assert str(err.value) == ("unknown config key(s) 'rankng_readout' (did you mean "
                              f"'ranking_readout'?) on the command line: {FIX}")


def test_a_scripts_own_argv_flags_only_warn(monkeypatch, caplog):
    """Called from a user's script, sys.argv holds the script's flags: RecBole reads every
    --key=value there, but they are not the user's config keys."""
    monkeypatch.delenv(ARGV_OVERRIDES_ENV, raising=False)
    monkeypatch.setattr(sys, "argv", ["my_script.py", "--out=results"])
    config = Config("SASRec", "ml-100k")
    assert config["model"] == "SASRec"
    assert "sys.argv holds --key=value argument(s) that are no config key: 'out'" in caplog.text


def test_misspelt_keys_in_a_file_and_in_config_dict_say_where(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("epochs: 2\n")
    bad.write_text("lerning_rate: 0.01\n")
    with pytest.raises(ConfigError, match=r"'lerning_rate' \(did you mean 'learning_rate'\?\) "
                                          f"in {re.escape(str(bad))}:"):
        Config("SASRec", "ml-100k", config_file_list=[str(good), str(bad)])
    with pytest.raises(ConfigError, match=r"^unknown config key\(s\) 'qqq_zzz' in config_dict:"):
        Config("SASRec", "ml-100k", config_dict={"hidden_size": 16, "qqq_zzz": 1})


def test_a_removed_key_in_a_yaml_file_gets_its_own_error(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("epochs: 2\nhistory_ids: True\n")
    with pytest.raises(ConfigError) as err:
        Config("HyMiRec", "ml-100k", config_file_list=[str(path)])
    assert str(err.value) == "history_ids was removed in 0.2.0: drop it from your config"


def test_a_removed_key_on_the_command_line_gets_its_own_error(monkeypatch):
    monkeypatch.setenv(ARGV_OVERRIDES_ENV, "1")
    monkeypatch.setattr(sys, "argv", ["prog", "--lr_schedule=cosine"])
    with pytest.raises(ConfigError) as err:
        Config("HyMiRec", "ml-100k")
    assert str(err.value) == "lr_schedule was removed in 0.2.0: drop it from your config"


def test_a_removed_key_is_refused_with_strict_config_keys_false():
    with pytest.raises(ConfigError) as err:
        Config("HyMiRec", "ml-100k",
               config_dict={"context_order": "recent_first", "strict_config_keys": False})
    assert str(err.value) == "context_order was removed in 0.2.0: drop it from your config"


def test_no_property_file_sets_a_removed_key():
    for path in glob.glob(os.path.join(REPO_ROOT, "properties", "**", "*.*"), recursive=True):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert not [key for key in REMOVED_KEYS if key in text], path


def test_known_keys_of_recbole_and_the_plugin_pass():
    config = Config("HyMiRec", "ml-100k", config_dict={
        "ranking_readout": "next", "dense_loss_weight": 1.0, "learner": "adamw",
        "weight_decay": 0.3, "n_layers": 2, "world_size": 1, "mask_seen_items": True})
    assert config["ranking_readout"] == "next" and config["mask_seen_items"] is True


def test_strict_config_keys_false_lets_a_key_of_ones_own_through():
    config = Config("SASRec", "ml-100k", config_dict={"my_own_key": 3, "strict_config_keys": False})
    assert config["my_own_key"] == 3


def test_strict_config_keys_follows_configs_precedence(tmp_path, monkeypatch):
    """The switch itself is a config key: the command line beats config_dict beats files."""
    own = tmp_path / "own.yaml"
    own.write_text("strict_config_keys: False\nmy_own_key: 1\n")
    assert Config("SASRec", "ml-100k", config_file_list=[str(own)])["my_own_key"] == 1
    monkeypatch.setenv(ARGV_OVERRIDES_ENV, "1")
    monkeypatch.setattr(sys, "argv", ["prog", "--strict_config_keys=True"])
    with pytest.raises(ConfigError, match=f"'my_own_key' in {re.escape(str(own))}"):
        Config("SASRec", "ml-100k", config_file_list=[str(own)])


def test_strict_config_keys_given_as_text_is_a_type_error(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("strict_config_keys: 'False'\nmy_own_key: 1\n")  # quoted: text, not a flag
    with pytest.raises(ConfigError, match="strict_config_keys='False' must be true or false"):
        Config("SASRec", "ml-100k", config_file_list=[str(own)])


def test_deprecated_and_teacher_keys_of_recbole_pass():
    """RecBole warns about its deprecated keys itself; KD_DAGFM reads t_<key> for its teacher."""
    config = Config("SASRec", "ml-100k", config_dict={"t_embedding_size": 8,
                                                      "training_neg_sample_num": 1})
    assert config["t_embedding_size"] == 8
    with pytest.raises(ConfigError, match="'t_no_such_key'"):
        Config("SASRec", "ml-100k", config_dict={"t_no_such_key": 8})


def test_keys_recbole_reads_outside_its_files_are_exactly_the_listed_ones():
    """RecBole reads keys its property files never define; the constant lists exactly those
    (a RecBole upgrade that reads a new one fails here, not in a user's run)."""
    import recbole

    read = _keys_read_in(os.path.dirname(recbole.__file__))
    read -= {"choice", "uniform", "quniform", "loguniform"}  # hyperopt's space kinds, not keys
    assert read - property_file_keys(recbole_properties_dir()) == KEYS_OUTSIDE_PROPERTY_FILES


def test_every_key_the_plugin_reads_is_in_a_property_file_or_derived():
    """A hyper-parameter of the plugin lives in a property file, with its comment."""
    read = _keys_read_in(os.path.join(REPO_ROOT, "recbole_hymirec"))
    assert read - known_keys(properties_dir()) == set()


STACKED_FILES = sorted(
    [p for p in glob.glob(os.path.join(REPO_ROOT, "properties", "*.yaml"))
     if os.path.basename(p) != "overall.yaml"]  # overall.yaml is loaded by Config itself
    + glob.glob(os.path.join(REPO_ROOT, "properties", "benchmark", "*.yaml"))
    + glob.glob(os.path.join(REPO_ROOT, "properties", "presets", "*.yaml")))


@pytest.mark.parametrize("path", STACKED_FILES, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_files_users_stack_set_only_known_keys(path):
    """benchmark/, presets/: files passed with --config_files or --model_config
    define no key themselves, so a typo in one would be refused at run time; catch it here."""
    with open(path, encoding="utf-8") as f:
        keys = set(yaml.safe_load(f))
    assert keys - known_keys(properties_dir()) == set()


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO_ROOT, "properties", "**",
                                                               "*.yaml"), recursive=True)),
                         ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_every_property_file_key_is_commented_with_its_type(path):
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    keys = [line for line in lines if TOP_LEVEL_KEY.match(line)]
    assert keys, "a property file sets at least one key"
    assert [line for line in keys if not TYPED_COMMENT.search(line)] == []
