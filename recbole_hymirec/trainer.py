"""Trainers of the plugin models: ``<Model>Trainer`` classes are picked by utils.get_trainer."""
import json
import os
import tempfile
from contextlib import nullcontext

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.lr_schedule import LearningRateSchedule, check_schedule
from recbole_hymirec.weight_average import WeightAverage


def _tensor_bytes(state):
    return sum(t.numel() * t.element_size() for t in state.values())


def save_atomically(state, path):
    """torch.save through a temp file in the same folder + rename: a crash never leaves half
    a checkpoint, and an earlier run's file is only replaced by a complete one."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-ckpt-")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f, pickle_protocol=4)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class HyMiRecTrainer(Trainer):
    """RecBole's Trainer with HyMiRec's two stages and slim checkpoints.

    Stage 1 (item embeddings from cache or the LLM, codebook) runs when the model is built,
    before ``fit``; its statistics are logged here. Stage 2 is RecBole's training loop over
    the trainable parameters only. Checkpoints hold the trainable weights (LoRA, adapters,
    queries, heads) and the codebook, not the frozen LLM. With ``ema_decay > 0``, validation,
    checkpoints and hence the test see an exponential moving average of the trainable weights
    (weight_average.py). ``lr_schedule`` / ``warmup_ratio`` set the rate per step over the
    ``epochs`` budget (lr_schedule.py).
    """

    def __init__(self, config, model):
        super(HyMiRecTrainer, self).__init__(config, model)
        self.train_stride_rotate = config["train_stride_rotate"]
        self._phase_loaders = {}  # stride phase -> its training loader, built once
        self.weight_average = self._build_weight_average(config["ema_decay"])
        self.lr_schedule = self._build_lr_schedule(config["lr_schedule"], config["warmup_ratio"])
        self.logger.info(set_color("stage 1", "green") + ": "
                         + json.dumps(self.model.stage1_stats, sort_keys=True))
        full = _tensor_bytes(self.model.state_dict())
        slim = _tensor_bytes(self.model.checkpoint_state_dict())
        self.logger.info(set_color("checkpoint size", "green")
                         + f": {slim / 2**20:.1f} MiB of weights (full state {full / 2**20:.1f} MiB)")

    def _build_weight_average(self, decay):
        """None when ``ema_decay`` is 0 (or ~); else an average updated after every optimizer step."""
        if decay is None:
            return None
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ConfigError(f"ema_decay={decay!r} must be a number in [0, 1) (0 = off). "
                              "Fix: --ema_decay=0.995, or --ema_decay=0 for the last weights.")
        if decay == 0:
            return None
        average = WeightAverage(((name, p) for name, p in self.model.named_parameters()
                                 if p.requires_grad), decay)
        self.optimizer.register_step_post_hook(lambda *_: average.update())
        return average

    def _build_lr_schedule(self, kind, warmup_ratio):
        """None for RecBole's constant rate; else a schedule stepped after every optimizer step."""
        check_schedule(kind, warmup_ratio)
        if kind == "constant" and warmup_ratio == 0:
            return None
        schedule = LearningRateSchedule(self.optimizer, kind, warmup_ratio)
        self.optimizer.register_step_post_hook(lambda *_: schedule.step())
        return schedule

    def fit(self, train_data, valid_data=None, **kwargs):
        if self.lr_schedule is not None:  # the budget: every epoch has len(train_data) steps
            self.lr_schedule.begin(self.epochs * len(train_data))
        return super().fit(train_data, valid_data, **kwargs)

    def _averaged_weights(self):
        """Context in which the model holds the averaged weights (a no-op without ema_decay)."""
        return nullcontext() if self.weight_average is None else self.weight_average.swapped_in()

    def _valid_epoch(self, valid_data, show_progress=False):
        with self._averaged_weights():
            return super()._valid_epoch(valid_data, show_progress=show_progress)

    def resume_checkpoint(self, resume_file):
        super().resume_checkpoint(resume_file)
        if self.weight_average is None and self.lr_schedule is None:
            return
        # RecBole's method keeps the file's dict to itself
        checkpoint = torch.load(str(resume_file), map_location=self.device, weights_only=False)
        if self.weight_average is not None:
            self.weight_average.resume(checkpoint.get("weight_average"))
        if self.lr_schedule is not None:  # the rates resume at the checkpoint's step
            self.lr_schedule.steps = checkpoint.get("lr_schedule_steps", 0)

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", self._parameter_groups())
        return super()._build_optimizer(**kwargs)

    def _parameter_groups(self):
        """The trainable parameters; the item bias in a group of its own when ``item_bias_lr``
        is set (Adam moves each parameter about ``lr`` per step: at 1e-3 a bias needs thousands
        of steps to span the ~6 of log-popularity between rare and popular items)."""
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        bias = getattr(self.model, "item_bias", None)
        if bias is None or self.config["item_bias_lr"] is None:
            return trainable
        return [{"params": [p for p in trainable if p is not bias]},
                {"params": [bias], "lr": self.config["item_bias_lr"]}]

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        return super()._train_epoch(self._epoch_train_data(train_data, epoch_idx), epoch_idx,
                                    loss_func=loss_func, show_progress=show_progress)

    def _epoch_train_data(self, train_data, epoch_idx):
        """With ``train_stride_rotate``, epoch ``e`` trains on the stride phase ``e mod k``: a
        fixed phase shows the same 1/k of the prefixes every epoch; rotating covers every
        prefix in ``k`` epochs at the same cost per epoch. Phase 0 is ``train_data`` itself."""
        dataset = train_data._dataset
        if not self.train_stride_rotate or not hasattr(dataset, "unstrided_split"):
            return train_data
        phase = epoch_idx % dataset.train_stride
        if phase == 0:
            return train_data
        if phase not in self._phase_loaders:  # one loader per phase: its shuffle keeps moving
            loader = type(train_data)(train_data.config, dataset.stride_phase(phase),
                                      train_data._sampler, shuffle=train_data.shuffle)
            loader.model = train_data.model  # dynamic negative sampling scores with it
            self._phase_loaders[phase] = loader
        return self._phase_loaders[phase]

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        with self._averaged_weights():  # the checkpoint holds the weights that were validated
            # state_dict() views the parameters: copy before they are swapped back
            model_state = {k: v.clone() for k, v in self.model.checkpoint_state_dict().items()}
        state = {
            "config": self.config,
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "state_dict": model_state,
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        if self.weight_average is not None:
            state["weight_average"] = self.weight_average.training_state()
        if self.lr_schedule is not None:
            state["lr_schedule_steps"] = self.lr_schedule.steps
        save_atomically(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")
