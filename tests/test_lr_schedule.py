"""lr_schedule / warmup_ratio: the per-step learning rate and HyMiRecTrainer's use of it."""
import math

import pytest
import torch

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.lr_schedule import LearningRateSchedule
from test_weight_average import _trainer


def _optimizer(*rates):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in rates]
    return torch.optim.SGD(groups)


def _rates(schedule, steps):
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in schedule.optimizer.param_groups])
        schedule.step()
    return seen


def test_cosine_warms_up_then_decays_to_zero_keeping_the_groups_ratio():
    schedule = LearningRateSchedule(_optimizer(1.0, 0.1), "cosine", warmup_ratio=0.2)
    schedule.begin(10)  # 2 warm-up steps, 8 of decay
    rates = _rates(schedule, 10)
    assert [r[0] for r in rates[:3]] == pytest.approx([0.5, 1.0, 1.0])
    assert rates[5][0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 8)))
    decay = [r[0] for r in rates[2:]]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert schedule.factor(10) == 0.0 and schedule.factor(50) == 0.0  # past the budget: 0
    assert all(r[1] == pytest.approx(0.1 * r[0]) for r in rates)


def test_linear_and_constant_with_warm_up():
    linear = LearningRateSchedule(_optimizer(2.0), "linear")
    linear.begin(4)
    assert [r[0] for r in _rates(linear, 4)] == pytest.approx([2.0, 1.5, 1.0, 0.5])
    constant = LearningRateSchedule(_optimizer(2.0), "constant", warmup_ratio=0.5)
    constant.begin(4)
    assert [r[0] for r in _rates(constant, 4)] == pytest.approx([1.0, 2.0, 2.0, 2.0])


def test_trainer_decays_to_zero_over_the_budget_and_resume_continues_at_the_step(assets, tmp_path):
    trainer, train, valid = _trainer(assets, tmp_path, lr_schedule="cosine", epochs=2,
                                     stopping_step=5)
    base = trainer.optimizer.param_groups[0]["lr"]
    trainer.fit(train, valid)
    assert trainer.lr_schedule.steps == 2 * len(train)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=False)
    saved_steps = checkpoint["lr_schedule_steps"]
    assert 0 < saved_steps <= 2 * len(train)

    resumed, train, _ = _trainer(assets, tmp_path, lr_schedule="cosine", epochs=2)
    resumed.resume_checkpoint(trainer.saved_model_file)
    resumed.lr_schedule.begin(2 * len(train))
    assert resumed.lr_schedule.steps == saved_steps
    assert resumed.lr_schedule.base_lrs[0] == base  # not the checkpoint's decayed rate
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(
        base * resumed.lr_schedule.factor(saved_steps))


def test_constant_without_warm_up_leaves_recbole_s_learner_alone(assets, tmp_path):
    trainer, train, valid = _trainer(assets, tmp_path, epochs=1)
    assert trainer.lr_schedule is None
    trainer.fit(train, valid)
    assert trainer.optimizer.param_groups[0]["lr"] == trainer.config["learning_rate"]


@pytest.mark.parametrize("overrides, message", [
    ({"lr_schedule": "step"}, r"lr_schedule='step' is not one of constant, linear, cosine\. "
                              r"Fix: --lr_schedule=cosine"),
    ({"warmup_ratio": 1.0}, r"warmup_ratio=1\.0 must be a number in \[0, 1\): the share of the "
                            r"training steps that ramp the rate up\. Fix: --warmup_ratio=0\.05"),
    ({"lr_schedule": "cosine", "warmup_ratio": -0.1}, r"warmup_ratio=-0\.1 must be a number"),
])
def test_bad_schedule_values_are_refused(assets, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        _trainer(assets, tmp_path, **overrides)
