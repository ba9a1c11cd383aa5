"""compat: clear version errors; RecBole's checkpoint reloads trusted, nothing else."""
import pickle

import numpy
import pandas
import pytest
import torch

from recbole_hymirec import compat
from recbole_hymirec.errors import EnvironmentMismatchError


class Opaque:
    """Not a tensor type: torch's weights_only loader refuses to unpickle it."""

    def __init__(self, value):
        self.value = value


@pytest.mark.parametrize("module,version,pin", [(numpy, "3.0.0", "numpy<3"),
                                                 (pandas, "4.0.0", "pandas<4")])
def test_unsupported_major_versions_are_named_with_the_fix(monkeypatch, module, version, pin):
    monkeypatch.setattr(module, "__version__", version)
    with pytest.raises(EnvironmentMismatchError) as info:
        compat.check_versions()
    assert f"{module.__name__} {version} is installed" in str(info.value)
    assert f"pip install '{pin}'" in str(info.value)


def test_installed_versions_pass():
    compat.check_versions()


def _save_opaque(path):
    torch.save({"config": Opaque(3), "state_dict": {"w": torch.ones(2)}}, path,
               pickle_protocol=4)


def test_recbole_trainer_loads_its_own_checkpoint(tmp_path):
    path = str(tmp_path / "ckpt.pth")
    _save_opaque(path)
    # evaluate the load from a frame whose module is RecBole's trainer
    loader = eval("lambda f: torch.load(f, map_location='cpu')",
                  {"torch": torch, "__name__": "recbole.trainer.trainer"})
    checkpoint = loader(path)
    assert checkpoint["config"].value == 3


def test_other_callers_keep_torch_default(tmp_path):
    path = str(tmp_path / "ckpt.pth")
    _save_opaque(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_patch_is_applied_once():
    compat.patch_checkpoint_loading()
    assert torch.load.__hymirec_trusting__
    assert not getattr(torch.load.__wrapped__, "__hymirec_trusting__", False)


def test_numpy1_aliases_recbole_reads_exist():
    """numpy >= 2 removed them; RecBole's Config.compatibility_settings reads them."""
    assert numpy.float_ is numpy.float64 and numpy.complex_ is numpy.complex128
    assert numpy.unicode_ is numpy.str_


def _dataset_with_gaps(tmp_path):
    """``gaps.inter`` with a missing rating and ``gaps.item`` whose titles are token_seq."""
    folder = tmp_path / "gaps"
    folder.mkdir()
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(1, 6):
        for step in range(4):
            rating = "" if (user, step) == (1, 0) else str(1 + (user + step) % 5)
            inter.append(f"{user}\t{1 + (user + step) % 6}\t{rating}\t{user * 100 + step}")
    (folder / "gaps.inter").write_text("\n".join(inter) + "\n")
    items = ["item_id:token\ttitle:token_seq"] + [f"{i}\tred fox {i} jumps" for i in range(1, 7)]
    (folder / "gaps.item").write_text("\n".join(items) + "\n")
    return str(tmp_path)


def test_missing_floats_are_filled_and_token_seq_ids_round_trip(tmp_path):
    """pandas >= 3: NaN filling and token_seq remapping go through the shims."""
    from recbole_hymirec.config import Config
    from recbole_hymirec.utils import create_dataset

    config = Config(model="SASRec", dataset="gaps", config_dict={
        "data_path": _dataset_with_gaps(tmp_path), "strict_config_keys": False,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"],
                     "item": ["item_id", "title"]}})
    dataset = create_dataset(config)  # its features stay DataFrames until the split
    ratings = numpy.asarray(dataset.inter_feat["rating"], dtype=float)
    assert len(ratings) == 20 and not numpy.isnan(ratings).any()
    words = dataset.field2id_token["title"]
    items = dataset.item_feat.set_index("item_id")["title"]
    for item_id in range(1, dataset.item_num):
        title = [str(words[w]) for w in items[item_id]]
        token = dataset.field2id_token["item_id"][item_id]
        assert title == ["red", "fox", str(token), "jumps"]
