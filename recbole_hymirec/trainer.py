"""Trainers of the plugin models: ``<Model>Trainer`` classes are picked by utils.get_trainer."""
import json
import os
import tempfile

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color


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
    queries, heads) and the codebook, not the frozen LLM.
    """

    def __init__(self, config, model):
        super(HyMiRecTrainer, self).__init__(config, model)
        self.train_stride_rotate = config["train_stride_rotate"]
        self._phase_loaders = {}  # stride phase -> its training loader, built once
        self.logger.info(set_color("stage 1", "green") + ": "
                         + json.dumps(self.model.stage1_stats, sort_keys=True))
        full = _tensor_bytes(self.model.state_dict())
        slim = _tensor_bytes(self.model.checkpoint_state_dict())
        self.logger.info(set_color("checkpoint size", "green")
                         + f": {slim / 2**20:.1f} MiB of weights (full state {full / 2**20:.1f} MiB)")

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
        state = {
            "config": self.config,
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "state_dict": self.model.checkpoint_state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        save_atomically(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")
