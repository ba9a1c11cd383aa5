"""Protocol files and budget presets: which keys each kind of stacked file holds.

A leaderboard stacks, for each model, the protocol files (``properties/benchmark/``: split,
order, ranking, metrics, seed, masking), then the presets (``properties/presets/``: the
budget), shared ones first and the model's own (``--model_config``) last; a later file wins.
Every preset sets every budget key, so the last preset of a stack decides the whole budget
and nothing of an earlier one (the baselines', say) reaches the model by accident.
"""
import os

import yaml

# Keys a protocol file may set: the same for every model of a leaderboard.
PROTOCOL_KEYS = frozenset({
    "eval_args", "seed", "reproducibility", "metrics", "topk", "valid_metric",
    "valid_metric_bigger", "metric_decimal_place", "mask_seen_items",
})
# Keys every preset sets: what a run may spend.
BUDGET_KEYS = ("MAX_ITEM_LIST_LENGTH", "epochs", "stopping_step", "eval_step",
               "train_batch_size", "eval_batch_size", "learning_rate")
# Budget keys of one model on top of BUDGET_KEYS: a preset used for it sets them too.
MODEL_BUDGET_KEYS = {"HyMiRec": ("llm_num_layers", "long_seq_len", "train_stride")}

PRESETS_FOLDER = "presets"


def budget_keys(model):
    """The budget keys a preset for ``model`` sets (``model`` without overrides)."""
    return BUDGET_KEYS + MODEL_BUDGET_KEYS.get(model, ())


def is_preset(path):
    """A file of a ``presets/`` folder."""
    return os.path.basename(os.path.dirname(os.path.abspath(path))) == PRESETS_FOLDER


def last_preset(files):
    """The preset that decides a stack's budget (the last one), or None."""
    presets = [path for path in files if is_preset(path)]
    return presets[-1] if presets else None


def read_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def missing_budget_keys(model, files):
    """Budget keys of ``model`` that the stack's last preset leaves unset (sorted); every
    budget key when the stack has no preset."""
    preset = last_preset(files)
    values = read_yaml(preset) if preset and os.path.isfile(preset) else {}
    return sorted(set(budget_keys(model)) - set(values))
