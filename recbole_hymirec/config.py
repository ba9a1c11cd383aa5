"""Config: RecBole's Config that knows the plugin's models, metrics and property files.

Precedence, lowest first: RecBole's internal files < the plugin's ``properties/overall.yaml``,
``properties/model/<Model>.yaml`` and ``properties/dataset/<dataset>.yaml`` <
``config_file_list`` < ``config_dict`` < command line ``--key=value``. In
``config_file_list`` a later file wins: a protocol (``properties/benchmark/``) first, a budget
preset (``properties/presets/``) last (presets.py).
"""
import os
from logging import getLogger

import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_hymirec.cli import ARGV_OVERRIDES_ENV
from recbole_hymirec.config_keys import (check_known_keys, check_removed_keys, known_keys,
                                         unknown_keys, with_suggestions)
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.property_files import properties_dir
from recbole_hymirec.utils import get_model


def plugin_property_files(model, dataset):
    """The plugin's YAML files (plugin-wide, model, dataset) that exist, in load order."""
    root = properties_dir()
    files = [
        os.path.join(root, "overall.yaml"),
        os.path.join(root, "model", f"{model}.yaml"),
        os.path.join(root, "dataset", f"{dataset}.yaml"),
    ]
    return [f for f in files if os.path.isfile(f)]


def _uses_cuda(final):
    return bool(final.get("use_gpu", True)) and str(final.get("gpu_id", "")) != "" \
        and torch.cuda.is_available()


def _expected_kind(default, value):
    """What ``value`` should have been, when it plainly is not (else None)."""
    if value is None:  # ``key: ~`` switches a feature off, whatever its default
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int) and not isinstance(value, int) and isinstance(value, (str, float)):
        return "an integer"
    if isinstance(default, float) and isinstance(value, str):
        return "a number"
    return None


class Config(RecBoleConfig):
    """Accepts plugin model names (or classes) and loads the plugin's property files."""

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
        if model is None or dataset is None:
            missing = "model" if model is None else "dataset"
            raise ConfigError(
                f"No {missing} given. Fix: pass it as an argument, in a config file, "
                f"in config_dict or on the command line (--{missing}=NAME)."
            )
        if isinstance(model, str):
            return model, get_model(model), dataset
        return model.__name__, model, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for file in plugin_property_files(model, dataset):
            with open(file, "r", encoding="utf-8") as f:
                values = yaml.load(f.read(), Loader=self.yaml_loader) or {}
            self.internal_config_dict.update(values)
            if os.path.basename(os.path.dirname(file)) == "dataset":
                self.parameters["Dataset"] += [
                    k for k in values if k not in self.parameters["Dataset"]
                ]

    def _check_value_types(self):
        """A number or flag given as text (``--epochs=abc``) fails here, not deep in training."""
        for key, value in self.external_config_dict.items():
            expected = _expected_kind(self.internal_config_dict.get(key), value)
            if expected:
                default = self.internal_config_dict[key]
                raise ConfigError(f"{key}={value!r} must be {expected} (default {default!r}). "
                                  f"Fix: --{key}={default!r}, or another value of that kind.")

    def _load_config_files(self, file_list):
        """RecBole's merge of the files, plus which keys each file sets (for error messages)."""
        self.keys_by_file = {}
        for path in file_list or []:
            with open(path, "r", encoding="utf-8") as f:
                self.keys_by_file[path] = set(yaml.load(f.read(), Loader=self.yaml_loader) or {})
        return super()._load_config_files(file_list)

    def _strict_keys(self):
        """``strict_config_keys``: the user's value (any source), else the plugin's default."""
        return self.external_config_dict.get(
            "strict_config_keys", self.internal_config_dict.get("strict_config_keys", True))

    def _check_keys_are_known(self):
        """A key no property file defines is a typo RecBole would ignore: refuse it, naming
        where it came from (unless ``strict_config_keys`` is False). RecBole reads every
        ``--key=value`` of ``sys.argv``: those are refused only when a command of this
        plugin put its overrides there; a script's own flags only get a warning. A removed
        key (config_keys.REMOVED_KEYS) is refused with its own message, strict or not."""
        sources = {f"in {path}": keys for path, keys in self.keys_by_file.items()}
        sources["in config_dict"] = self.variable_config_dict
        from_plugin_command = os.environ.get(ARGV_OVERRIDES_ENV) == "1"
        if from_plugin_command:
            sources["on the command line"] = self.cmd_config_dict
        check_removed_keys(sources)
        if self._strict_keys() is False:
            return
        known = known_keys(properties_dir(), self.internal_config_dict)
        if not from_plugin_command:
            self._warn_unknown_argv_keys(known)
        check_known_keys(sources, known)

    def _warn_unknown_argv_keys(self, known):
        unknown = unknown_keys(self.cmd_config_dict, known)
        if unknown:
            getLogger(__name__).warning(
                f"sys.argv holds --key=value argument(s) that are no config key: "
                f"{with_suggestions(unknown, known)}. RecBole reads every --key=value of "
                "sys.argv; these change nothing unless a model of your own reads them.")

    def _check_cuda_request(self):
        """``use_gpu: True`` written by the user on a machine without CUDA is an error, not a
        silent CPU run (RecBole's own default, also True, keeps falling back quietly)."""
        if self.external_config_dict.get("use_gpu") is True and not torch.cuda.is_available():
            raise ConfigError(
                "use_gpu=True was requested but torch sees no CUDA device "
                f"(torch {torch.__version__}). Fix: --use_gpu=False to run on the CPU, or run on "
                "a machine with a GPU and a CUDA build of torch.")

    def _init_device(self):
        """RecBole's, except that CPU ranks of a distributed run use gloo (RecBole: NCCL only)."""
        self._check_cuda_request()
        final = self.final_config_dict
        if "local_rank" not in final or _uses_cuda(final):
            return super()._init_device()
        final["gpu_id"] = ""
        torch.distributed.init_process_group(
            backend="gloo", rank=final["local_rank"] + final["offset"],
            world_size=final["world_size"], init_method=f"tcp://{final['ip']}:{final['port']}")
        final.update(device=torch.device("cpu"), single_spec=False)
        if final["local_rank"] != 0:
            final.update(state="error", show_progress=False, verbose=False)

    def _get_final_config_dict(self):
        self._check_value_types()
        self._check_keys_are_known()
        final = super()._get_final_config_dict()
        # RecBole's overall.yaml samples negatives by default, which it then refuses for
        # sequential models trained with loss_type CE (SASRec, GRU4Rec, ... out of the box).
        # Unless the user asked for negatives, a CE sequential model gets none.
        if (
            final.get("loss_type") == "CE"
            and final.get("MODEL_TYPE") == ModelType.SEQUENTIAL
            and "train_neg_sample_args" not in self.external_config_dict
        ):
            final["train_neg_sample_args"] = None
        return final
