"""Config: plugin property files, precedence, model classes."""
import os
import sys

import pytest
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_hymirec import config as config_module
from recbole_hymirec import utils
from recbole_hymirec.config import Config, properties_dir
from recbole_hymirec.errors import ConfigError


class PrecedenceRec(SASRec):
    pass


@pytest.fixture
def plugin_properties(tmp_path, monkeypatch):
    """A properties/ folder whose model/PrecedenceRec.yaml sets every probed key."""
    root = tmp_path / "properties"
    (root / "model").mkdir(parents=True)
    (root / "dataset").mkdir()
    (root / "model" / "PrecedenceRec.yaml").write_text(
        "loss_type: CE\nepochs: 7\ninner_size: 11\nhidden_size: 11\nn_heads: 11\n"
    )
    monkeypatch.setattr(config_module, "properties_dir", lambda: str(root))
    monkeypatch.setitem(utils.PLUGIN_MODELS, "PrecedenceRec", __name__)
    return root


def test_precedence_plugin_default_file_dict_cmdline(plugin_properties, tmp_path, monkeypatch):
    user_file = tmp_path / "user.yaml"
    user_file.write_text("inner_size: 22\nhidden_size: 22\nn_heads: 22\n")
    monkeypatch.setattr(sys, "argv", ["prog", "--n_heads=44"])
    config = Config("PrecedenceRec", "ml-100k", config_file_list=[str(user_file)],
                    config_dict={"hidden_size": 33, "n_heads": 33})
    assert config["epochs"] == 7          # plugin default beats RecBole's overall.yaml (300)
    assert config["inner_size"] == 22     # file beats plugin default
    assert config["hidden_size"] == 33    # dict beats file
    assert config["n_heads"] == 44        # command line beats dict
    assert config["learning_rate"] == 0.001  # untouched keys keep RecBole's defaults


def test_plugin_dataset_file_is_loaded_for_ml100k():
    config = Config("SASRec", "ml-100k")
    assert config["load_col"]["item"] == ["item_id", "movie_title", "release_year", "class"]
    assert config["item_text_fields"] == ["movie_title", "release_year", "class"]
    assert "item_text_fields" in config.parameters["Dataset"]


def test_accepts_a_model_class(plugin_properties):
    config = Config(PrecedenceRec, "ml-100k")
    assert config["model"] == "PrecedenceRec"
    assert config["inner_size"] == 11  # its plugin file is found by the class name


def test_ce_sequential_model_gets_no_negatives_unless_asked():
    assert Config("SASRec", "ml-100k")["train_neg_sample_args"]["distribution"] == "none"
    bpr = Config("SASRec", "ml-100k", config_dict={"loss_type": "BPR"})
    assert bpr["train_neg_sample_args"]["distribution"] == "uniform"


def test_missing_model_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"No model given\. Fix: "):
        Config(dataset="ml-100k")


def test_properties_dir_is_the_checkout_folder_here():
    root = properties_dir()
    assert os.path.isfile(os.path.join(root, "dataset", "ml-100k.yaml"))


@pytest.mark.parametrize("key,value,expected", [
    ("epochs", "abc", "epochs='abc' must be an integer (default 300). Fix: --epochs=300"),
    ("epochs", 2.5, "epochs=2.5 must be an integer (default 300)"),
    ("learning_rate", "fast", "learning_rate='fast' must be a number (default 0.001)"),
    ("reproducibility", "maybe", "reproducibility='maybe' must be true or false (default True)"),
])
def test_values_of_the_wrong_kind_are_named(key, value, expected):
    with pytest.raises(ConfigError) as info:
        Config("SASRec", "ml-100k", config_dict={key: value})
    assert str(info.value).startswith(expected)


def test_command_line_text_for_a_number_is_refused(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--train_batch_size=big"])
    with pytest.raises(ConfigError, match=r"train_batch_size='big' must be an integer"):
        Config("SASRec", "ml-100k")


def test_right_kinds_pass():
    config = Config("SASRec", "ml-100k", config_dict={"epochs": 3, "learning_rate": 1,
                                                      "reproducibility": False,
                                                      "normalize_all": None})
    assert config["epochs"] == 3 and config["learning_rate"] == 1
    assert config["normalize_all"] is None
