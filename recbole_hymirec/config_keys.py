"""Which config keys exist, so that a misspelt one is an error and not a silent default.

RecBole's Config takes any ``--key=value``, YAML key or ``config_dict`` entry: a typo such as
``--rankng_readout=next`` trains the default and says nothing, and a leaderboard row named
after it reports a configuration that never ran. A key is known when a file that Config
loads by itself defines it: RecBole's and this plugin's ``overall.yaml``, every model's and
every dataset's file (so a key of another model passes), RecBole's quick-start files; or when
RecBole reads it without any such file defining it (the list below). The files users stack
with ``--config_files`` (``properties/benchmark/``, ``properties/presets/``) define
nothing: their own keys are checked like any user file's.
"""
import difflib
import glob
import os
from functools import lru_cache

import recbole
import yaml

from recbole_hymirec.errors import ConfigError

# RecBole 1.2.1 reads these (``config["..."]``) although none of the files above defines
# them: derived values, model keys its files forget and the distributed launcher's keys.
# tests/test_config_keys.py re-derives exactly this set from RecBole's source.
KEYS_OUTSIDE_PROPERTY_FILES = frozenset({
    "CROP_ITEM_SEQ", "CROP_ITEM_SEQ_LEN", "INVERSE_ITEM_SEQ", "MASK_INDEX", "MASK_ITEM_SEQ",
    "MODEL_INPUT_TYPE", "MODEL_TYPE", "NEG_ITEMS", "POS_ITEMS", "REORDER_ITEM_SEQ",
    "cin", "contrast", "dataset", "device", "encoding", "eta", "eval_type", "feature_num",
    "has_residual", "ip", "local_rank", "model", "norm", "nproc", "offset", "port",
    "sim", "single_spec", "tail_ratio", "test_neg_sample_args", "token_num_threshold",
    "use_filter", "valid_neg_sample_args", "verbose", "world_size", "xgb_early_stopping_rounds",
})
# HyMiRec keys that no longer exist, with the release that removed them: a config that sets
# one gets its own error, not the unknown-key one (see CHANGELOG.md).
REMOVED_KEYS = {key: "0.2.0" for key in (
    "history_ids", "train_stride_rotate", "history_item_dropout", "lr_schedule", "warmup_ratio",
    "item_bias_init", "item_bias_lr", "context_order")}
# Keys RecBole still accepts, with a warning of its own that names the replacement.
DEPRECATED_KEYS = frozenset({"neg_sampling", "training_neg_sample_num"})
# KD_DAGFM copies every ``t_<key>`` into its teacher model's config.
TEACHER_PREFIX = "t_"
# Files of RecBole's properties/dataset/ that map dataset names to download links, not keys.
NOT_KEY_FILES = ("url.yaml", "kg_url.yaml")


def recbole_properties_dir():
    """RecBole's own ``properties/`` folder (overall, model, dataset, quick-start files)."""
    return os.path.join(os.path.dirname(recbole.__file__), "properties")


def _files_config_loads(folder):
    """The YAML files of ``folder`` that Config reads by itself: ``overall.yaml`` and the
    ``model/``, ``dataset/`` and ``quick_start_config/`` files, without the URL tables."""
    paths = [os.path.join(folder, "overall.yaml")]
    for sub in ("model", "dataset", "quick_start_config"):
        paths += sorted(glob.glob(os.path.join(folder, sub, "*.yaml")))
    return [p for p in paths if os.path.isfile(p) and os.path.basename(p) not in NOT_KEY_FILES]


@lru_cache(maxsize=None)
def property_file_keys(folder):
    """Top-level keys of the files Config loads from ``folder`` (read once per folder)."""
    keys = set()
    for path in _files_config_loads(folder):
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
        if isinstance(values, dict):
            keys.update(values)
    return frozenset(keys)


def known_keys(plugin_properties_dir, loaded_keys=()):
    """Every key a config may set: RecBole's and the plugin's property files, the keys read
    outside them, and ``loaded_keys`` (what this run's internal files already define)."""
    return (property_file_keys(recbole_properties_dir())
            | property_file_keys(plugin_properties_dir)
            | KEYS_OUTSIDE_PROPERTY_FILES | DEPRECATED_KEYS | set(loaded_keys))


def unknown_keys(keys, known):
    """The keys of ``keys`` that are not in ``known`` (nor a teacher copy of one), sorted."""
    def is_known(key):
        return key in known or (key.startswith(TEACHER_PREFIX) and key[len(TEACHER_PREFIX):] in known)
    return sorted(str(key) for key in keys if not is_known(key))


def check_removed_keys(sources):
    """ConfigError for the first key of ``sources`` (``{where: keys}``) in REMOVED_KEYS."""
    for keys in sources.values():
        removed = sorted(str(key) for key in keys if key in REMOVED_KEYS)
        if removed:
            key = removed[0]
            raise ConfigError(f"{key} was removed in {REMOVED_KEYS[key]}: drop it from your config")


def check_known_keys(sources, known):
    """ConfigError for the first source (``{where: keys}``) that sets a key not in ``known``;
    the message names the key, where it came from, the closest known keys and the fix."""
    for where, keys in sources.items():
        unknown = unknown_keys(keys, known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {with_suggestions(unknown, known)} {where}: "
                              "no property file of RecBole or of recbole_hymirec defines them, "
                              "so RecBole would ignore them silently. Fix: correct the spelling "
                              "(keys are case-sensitive), or set strict_config_keys: False for "
                              "the keys of a model of your own.")


def with_suggestions(unknown, known):
    """``'rankng_readout' (did you mean 'ranking_readout'?), 'zzz'``."""
    choices = sorted(str(key) for key in known)
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.75)
        parts.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return ", ".join(parts)
