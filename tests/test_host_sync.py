"""A training step never waits for the device: calculate_loss reads no tensor value on the host."""
import os

import pytest
import torch

from conftest import tiny_hymirec_settings
from recbole_hymirec.config import Config
from recbole_hymirec.utils import create_dataset, data_preparation, get_model

# every way a tensor's value reaches Python: each one waits for the device to finish
HOST_READS = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__int__", "__float__")


class HostSync(AssertionError):
    pass


def _refuse_host_reads(monkeypatch):
    for name in HOST_READS:
        def refused(*args, _name=name, **kwargs):
            raise HostSync(f"Tensor.{_name} reads a value on the host")
        monkeypatch.setattr(torch.Tensor, name, refused)
    monkeypatch.setattr(torch, "nonzero", lambda *a, **k: (_ for _ in ()).throw(
        HostSync("torch.nonzero reads a value on the host")))


def _model_and_batch(assets, **overrides):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(
        data_path, llm_path, n_interests=4, dmil_window=4, **overrides))
    train, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("HyMiRec")(config, train._dataset)
    return model, next(iter(train))


@pytest.mark.parametrize("overrides", [
    {},
    {"dense_loss_weight": 1.0, "coarse_history": "before_window", "loss_masks_seen": True,
     "mask_seen_items": True, "readout_loss_weight": 1.0, "item_bias": True},
    {"loss_type": "BPR", "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
     "refiner_reads": "full_history", "dense_loss_weight": 1.0},
    {"sampled_negatives": 8, "item_bias": True, "readout_loss_weight": 1.0,
     "dense_loss_weight": 1.0, "coarse_history": "before_window", "dmil_cluster_max_cosine": 0.5},
])
def test_calculate_loss_reads_nothing_on_the_host(assets, monkeypatch, overrides):
    model, batch = _model_and_batch(assets, **overrides)
    model.train()
    torch.manual_seed(0)  # the same dropout draws in both steps
    expected = sum(model.calculate_loss(batch))
    with monkeypatch.context() as patched:
        _refuse_host_reads(patched)
        torch.manual_seed(0)
        loss = sum(model.calculate_loss(batch))
        loss.backward()
    assert torch.equal(loss.detach(), expected.detach())  # the same step, without a host read
    with monkeypatch.context() as patched:  # the patch itself works: a host read fails
        _refuse_host_reads(patched)
        with pytest.raises(HostSync, match="Tensor.item reads a value on the host"):
            loss.item()
