"""Which config keys exist, so that a misspelt one is an error and not a silent default.

RecBole's Config takes any ``--key=value``, YAML key or ``config_dict`` entry: a typo such as
``--rankng_readout=next`` trains the default and says nothing, and a leaderboard row named
after it reports a configuration that never ran. A key is known when a property file of
RecBole or of this plugin defines it (every model's, so a key of another model passes), or
when RecBole or its launcher reads it without any file defining it (the list below).
"""
import difflib
import glob
import os
from functools import lru_cache

import recbole
import yaml

from recbole_hymirec.errors import ConfigError

# RecBole 1.2.1 reads these (``config["..."]``) although none of its property files defines
# them: derived values, model keys its files forget, and the distributed launcher's keys;
# ``resume`` is the plugin's. tests/test_config_keys.py re-derives the list from the source.
KEYS_OUTSIDE_PROPERTY_FILES = frozenset({
    "CROP_ITEM_SEQ", "CROP_ITEM_SEQ_LEN", "INVERSE_ITEM_SEQ", "MASK_INDEX", "MASK_ITEM_SEQ",
    "MODEL_INPUT_TYPE", "MODEL_TYPE", "NEG_ITEMS", "POS_ITEMS", "REORDER_ITEM_SEQ",
    "cin", "contrast", "dataset", "device", "encoding", "eta", "eval_type", "feature_num",
    "has_residual", "ip", "local_rank", "model", "norm", "nproc", "offset", "port", "resume",
    "sim", "single_spec", "tail_ratio", "test_neg_sample_args", "token_num_threshold",
    "use_filter", "valid_neg_sample_args", "verbose", "world_size", "xgb_early_stopping_rounds",
})


def recbole_properties_dir():
    return os.path.join(os.path.dirname(recbole.__file__), "properties")


@lru_cache(maxsize=None)
def property_file_keys(folder):
    """Top-level keys of every YAML file under ``folder`` (read once per folder)."""
    keys = set()
    for path in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True):
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
            | KEYS_OUTSIDE_PROPERTY_FILES | set(loaded_keys))


def check_known_keys(sources, known):
    """ConfigError for the first source (``{where: keys}``) that sets a key not in ``known``;
    the message names the key, where it came from, the closest known keys and the fix."""
    for where, keys in sources.items():
        unknown = sorted(str(key) for key in keys if key not in known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {_with_suggestions(unknown, known)} {where}: "
                              "no property file of RecBole or of recbole_hymirec defines them, "
                              "so RecBole would ignore them silently. Fix: correct the spelling "
                              "(keys are case-sensitive), or set strict_config_keys: False for "
                              "the keys of a model of your own.")


def _with_suggestions(unknown, known):
    """``'rankng_readout' (did you mean 'ranking_readout'?), 'zzz'``."""
    choices = sorted(str(key) for key in known)
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.75)
        parts.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return ", ".join(parts)
