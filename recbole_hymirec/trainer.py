"""Trainers of the plugin models: ``<Model>Trainer`` classes are picked by utils.get_trainer."""
import json
from contextlib import nullcontext

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_hymirec.atomic import atomic_open
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.weight_average import WeightAverage


def _tensor_bytes(state):
    return sum(t.numel() * t.element_size() for t in state.values())


# Trainable tensors of two or more dimensions that are no weight matrix: learnable query
# tokens (the refiner's interest queries, the lightweight branch's queries).
NOT_DECAYED_MATRICES = ("interest_queries", "queries")


def is_decayed(name, parameter):
    """Whether weight decay applies to the parameter ``name``: weight matrices only, not
    vectors (biases, norm weights, the item bias, the logit scale) nor query tokens."""
    leaf = name.rsplit(".", 1)[-1]
    return parameter.dim() >= 2 and leaf not in NOT_DECAYED_MATRICES


class HyMiRecTrainer(Trainer):
    """RecBole's Trainer with HyMiRec's two stages and slim checkpoints.

    Stage 1 (item embeddings from cache or the LLM, codebook) runs when the model is built,
    before ``fit``; its statistics are logged here. Stage 2 is RecBole's training loop over
    the trainable parameters only. Checkpoints hold the trainable weights (LoRA, adapters,
    queries, heads) and the codebook, not the frozen LLM. With ``ema_decay > 0``, validation,
    checkpoints and hence the test see an exponential moving average of the trainable weights
    (weight_average.py). ``weight_decay`` decays the weight matrices only
    (``_parameter_groups``).
    """

    def __init__(self, config, model):
        super(HyMiRecTrainer, self).__init__(config, model)
        self.weight_average = self._build_weight_average(config["ema_decay"])
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

    def _averaged_weights(self):
        """Context in which the model holds the averaged weights (a no-op without ema_decay)."""
        return nullcontext() if self.weight_average is None else self.weight_average.swapped_in()

    def _valid_epoch(self, valid_data, show_progress=False):
        with self._averaged_weights():
            return super()._valid_epoch(valid_data, show_progress=show_progress)

    def resume_checkpoint(self, resume_file):
        super().resume_checkpoint(resume_file)
        if self.weight_average is None:
            return
        # RecBole's method keeps the file's dict to itself
        checkpoint = torch.load(str(resume_file), map_location=self.device, weights_only=False)
        self.weight_average.resume(checkpoint.get("weight_average"))

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", self._parameter_groups())
        return super()._build_optimizer(**kwargs)

    def _parameter_groups(self):
        """The trainable parameters in two groups: the weight matrices (Linear, LoRA, the
        transformer's projections, ID embeddings) take the learner's ``weight_decay``; biases,
        norms, learnable query tokens, the logit scale and the item bias take none (decay would
        pull queries, offsets and the temperature toward 0 instead of regularising a mapping)."""
        decayed, kept = [], []
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                (decayed if is_decayed(name, parameter) else kept).append(parameter)
        return [{"params": decayed}, {"params": kept, "weight_decay": 0.0}]

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
        with atomic_open(saved_model_file) as f:  # never half a checkpoint
            torch.save(state, f, pickle_protocol=4)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")
