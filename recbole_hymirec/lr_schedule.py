"""A per-step learning-rate schedule (``lr_schedule``, ``warmup_ratio``), for HyMiRecTrainer.

RecBole's learner keeps ``learning_rate`` for the whole run. LoRA fine-tuning of an LLM (HLLM
among them) usually warms the rate up and then decays it over the training budget; at a
constant rate HyMiRec's valid NDCG@10 on ml-100k peaks by epoch 3-6 and then falls while the
training loss keeps falling.
"""
import math

from recbole_hymirec.errors import ConfigError

SCHEDULES = ("constant", "linear", "cosine")


def check_schedule(kind, warmup_ratio):
    """ConfigError naming the bad key and a valid value."""
    if kind not in SCHEDULES:
        raise ConfigError(f"lr_schedule={kind!r} is not one of {', '.join(SCHEDULES)}. "
                          "Fix: --lr_schedule=cosine, or --lr_schedule=constant (RecBole's).")
    if (isinstance(warmup_ratio, bool) or not isinstance(warmup_ratio, (int, float))
            or not 0 <= warmup_ratio < 1):
        raise ConfigError(f"warmup_ratio={warmup_ratio!r} must be a number in [0, 1): the share "
                          "of the training steps that ramp the rate up. Fix: --warmup_ratio=0.05")


class LearningRateSchedule:
    """Sets every parameter group's rate to ``base_lr * factor(step)`` after each optimizer step.

    Built with the learner, before a resumed checkpoint overwrites the groups' rates; ``begin``
    (at the start of ``fit``, when the batches per epoch are known) sets the budget.

    Args:
        optimizer: the learner; each group's current ``lr`` is its base rate (so a group with
            its own rate, e.g. ``item_bias_lr``, keeps its ratio to the others).
        kind: ``constant``, ``linear`` or ``cosine`` (both reach 0 at the last step).
        warmup_ratio: share of the budget over which the rate rises linearly to its base.
    """

    def __init__(self, optimizer, kind, warmup_ratio=0.0):
        check_schedule(kind, warmup_ratio)
        self.optimizer = optimizer
        self.kind = kind
        self.warmup_ratio = warmup_ratio
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0  # optimizer steps taken (a resumed run starts at its checkpoint's)
        self.total_steps = None

    def begin(self, total_steps):
        """``total_steps``: optimizer steps of the whole budget (epochs x batches per epoch)."""
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = int(round(self.warmup_ratio * self.total_steps))
        self._apply()

    def factor(self, step):
        """The multiplier of the base rates for optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def step(self):
        """Called after each optimizer step: the rates of the next one."""
        self.steps += 1
        self._apply()

    def _apply(self):
        factor = self.factor(self.steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
