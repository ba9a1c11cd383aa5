"""Model / trainer / dataset resolution: plugin first, RecBole's as fallback, clear errors."""
import sys

import pytest
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.trainer import Trainer

from recbole_hymirec import utils
from recbole_hymirec.errors import ConfigError


class FakeRec(SASRec):
    """A plugin model living in this test module."""


class FakeRecTrainer(Trainer):
    pass


@pytest.fixture
def fake_plugin(monkeypatch):
    monkeypatch.setitem(utils.PLUGIN_MODELS, "FakeRec", __name__)
    monkeypatch.setattr("recbole_hymirec.trainer.FakeRecTrainer", FakeRecTrainer, raising=False)


def test_hymirec_is_a_registered_plugin_model():
    from recbole_hymirec.model.hymirec import HyMiRec

    assert utils.get_model("HyMiRec") is HyMiRec
    assert "HyMiRec" in utils.plugin_model_names()


def test_recbole_model_resolves_through_plugin():
    assert utils.get_model("SASRec") is SASRec
    assert utils.get_model("GRU4Rec").__name__ == "GRU4Rec"


def test_plugin_model_resolves_first(fake_plugin, monkeypatch):
    assert utils.get_model("FakeRec") is FakeRec
    # a plugin model shadows a RecBole model of the same name
    monkeypatch.setitem(utils.PLUGIN_MODELS, "SASRec", __name__)
    monkeypatch.setattr(sys.modules[__name__], "SASRec", FakeRec)
    assert utils.get_model("SASRec") is FakeRec


def test_unknown_model_message_lists_plugins_and_says_recbole_searched(fake_plugin):
    with pytest.raises(ValueError) as info:
        utils.get_model("NoSuchModel")
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert message.startswith("Unknown model 'NoSuchModel'. Plugin models: ComiRec, FakeRec, HyMiRec. RecBole's ")
    assert "built-in models were searched too" in message
    assert "lightgbm" not in message.lower()


def test_wrong_case_gets_the_right_spelling():
    with pytest.raises(ConfigError, match="did you mean 'SASRec'"):
        utils.get_model("sasrec")


def test_trainer_plugin_first_then_recbole(fake_plugin):
    from recbole.utils import ModelType

    assert utils.get_trainer(ModelType.SEQUENTIAL, "FakeRec") is FakeRecTrainer
    assert utils.get_trainer(ModelType.SEQUENTIAL, "SASRec") is Trainer


def test_dataset_class_plugin_first(monkeypatch):
    class FakeRecDataset:
        pass

    monkeypatch.setitem(utils.PLUGIN_DATASETS, "FakeRec", __name__)
    monkeypatch.setattr(sys.modules[__name__], "FakeRecDataset", FakeRecDataset,
                        raising=False)
    assert utils.get_dataset_class({"model": "FakeRec"}) is FakeRecDataset
    assert utils.get_dataset_class({"model": "SASRec"}) is None
