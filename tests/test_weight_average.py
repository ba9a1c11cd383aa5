"""ema_decay: the moving average of the trainable weights, and HyMiRecTrainer's use of it."""
import os

import pytest
import torch

from conftest import tiny_hymirec_settings
from recbole_hymirec.config import Config
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.trainer import HyMiRecTrainer
from recbole_hymirec.utils import create_dataset, data_preparation, get_model
from recbole_hymirec.weight_average import WeightAverage


def test_average_follows_the_warmed_up_decay_and_swaps_back():
    weight = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([("w", weight)], decay=0.5)
    expected = torch.zeros(3)
    for step, value in enumerate([1.0, 2.0, 4.0, 8.0]):
        with torch.no_grad():
            weight.fill_(value)
        decay = min(0.5, (1 + step) / (10 + step))  # 0.1, 0.18, 0.25, 0.31: below 0.5
        expected = decay * expected + (1 - decay) * value
        average.update()
    assert torch.allclose(average.shadow["w"], expected)
    with average.swapped_in():
        assert torch.allclose(weight, expected)
    assert torch.equal(weight.detach(), torch.full((3,), 8.0))
    with pytest.raises(RuntimeError), average.swapped_in():
        raise RuntimeError("evaluation failed")
    assert torch.equal(weight.detach(), torch.full((3,), 8.0))  # restored on an error too


def test_bf16_weights_keep_an_fp32_average_that_swapping_does_not_round():
    weight = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    average = WeightAverage([("w", weight)], decay=0.998)
    average.steps = 10_000  # past the warm-up ((1 + t) / (10 + t) > 0.998): each update uses 0.998
    with torch.no_grad():
        weight.fill_(2.0)
    for _ in range(3):
        average.update()  # a 0.002 step: below bf16's resolution near 1
        with average.swapped_in():
            pass
    assert average.shadow["w"].dtype == torch.float32
    assert torch.allclose(average.shadow["w"], torch.full((4,), 2 - 0.998 ** 3), atol=1e-6)
    assert torch.equal(weight.detach(), torch.full((4,), 2.0, dtype=torch.bfloat16))


def _trainer(assets, tmp_path, **overrides):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(
        data_path, llm_path, checkpoint_dir=str(tmp_path), **overrides))
    train, valid, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return HyMiRecTrainer(config, get_model("HyMiRec")(config, train._dataset)), train, valid


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_validation_and_checkpoint_use_the_average_and_resume_restores_both(assets, tmp_path):
    trainer, train, valid = _trainer(assets, tmp_path, ema_decay=0.9, epochs=1)
    validated = {}
    score = trainer.model.full_sort_predict

    def spy(interaction):  # what the model holds while validation scores
        validated.update(_trainable(trainer.model))
        return score(interaction)

    trainer.model.full_sort_predict = spy
    trainer.fit(train, valid)
    trained, average = _trainable(trainer.model), trainer.weight_average
    assert average.steps == len(train)
    lora = next(n for n in trained if "lora_B" in n)  # starts at zero, so it moved
    assert not torch.equal(trained[lora], average.shadow[lora])
    for name in trained:
        assert torch.equal(validated[name], average.shadow[name])
    checkpoint = torch.load(trainer.saved_model_file, weights_only=False)
    for name in trained:
        assert torch.equal(checkpoint["state_dict"][name], average.shadow[name])
        assert torch.equal(checkpoint["weight_average"]["training_weights"][name], trained[name])

    resumed, _, _ = _trainer(assets, tmp_path, ema_decay=0.9, epochs=2)
    resumed.resume_checkpoint(trainer.saved_model_file)
    assert resumed.weight_average.steps == average.steps
    for name, weight in _trainable(resumed.model).items():
        assert torch.equal(weight, trained[name])
        assert torch.equal(resumed.weight_average.shadow[name], average.shadow[name])


def test_without_ema_the_checkpoint_holds_the_last_weights(assets, tmp_path):
    trainer, train, valid = _trainer(assets, tmp_path, epochs=1)
    assert trainer.weight_average is None
    trainer.fit(train, valid)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=False)
    assert "weight_average" not in checkpoint
    for name, weight in _trainable(trainer.model).items():
        assert torch.equal(checkpoint["state_dict"][name], weight)


@pytest.mark.parametrize("decay", [1.0, -0.1, 2])
def test_ema_decay_outside_zero_one_is_refused(assets, tmp_path, decay):
    with pytest.raises(ConfigError, match=rf"ema_decay={decay!r} must be a number in \[0, 1\) "
                                          r"\(0 = off\)\. Fix: --ema_decay=0\.995"):
        _trainer(assets, tmp_path, ema_decay=decay)
