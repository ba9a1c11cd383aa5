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


@pytest.mark.parametrize("module,version,pin", [(numpy, "2.1.0", "numpy<2"),
                                                 (pandas, "3.0.0", "pandas<3")])
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
