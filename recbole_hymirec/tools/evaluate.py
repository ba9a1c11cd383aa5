"""Evaluate a saved checkpoint again, on valid and test, with ranking-time overrides.

    python -m recbole_hymirec.tools.evaluate saved/HyMiRec-....pth [--ranking_readout=next] [--key=value ...]

Rebuilds the checkpoint's dataset, splits and model from the config it was trained with,
applies the ``--key=value`` overrides (keys the checkpoint's config or the model's property
file know; a key that changes the weights' shapes fails with the checkpoint's own error),
restores the weights, and prints one line ``EVAL {json}``: ``valid_result``, ``test_result``
and the ``overrides`` applied. Trains nothing. For a choice that only changes the ranking,
e.g. HyMiRec's ``ranking_readout``: compare readouts of one trained model on valid, then read
the test of the one chosen.
"""
import argparse
import json
import sys

import yaml

from recbole_hymirec.cli import run_reporting_user_errors, split_overrides
from recbole_hymirec.errors import ConfigError


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint written by a training run")
    return parser


def parse_overrides(extra):
    """``["--key=value", ...]`` -> ``{key: value}`` with YAML values (``1.0``, ``True``, ``next``)."""
    pairs = (arg[2:].split("=", 1) for arg in split_overrides(extra))
    return {key: yaml.safe_load(value) for key, value in pairs}


def known_keys(config):
    """Keys an override may set: the checkpoint's config and the model's property files."""
    from recbole_hymirec.quick_start import model_property_files

    keys = set(config.final_config_dict)
    for path in model_property_files(config["model"]):
        with open(path) as f:
            keys |= set(yaml.safe_load(f) or {})
    return keys


def apply_overrides(config, overrides):
    """Sets ``overrides`` in the checkpoint's ``config``; an unknown key is a ConfigError."""
    unknown = sorted(set(overrides) - known_keys(config))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} for {config['model']}: the checkpoint's "
                          "config and the model's property file have no such key. Fix: check "
                          "the spelling (keys are case-sensitive).")
    for key, value in overrides.items():
        config.final_config_dict[key] = value


def evaluate_checkpoint(model_file, overrides=None):
    """``{"valid_result", "test_result", "overrides"}`` of ``model_file`` under ``overrides``."""
    from recbole_hymirec.quick_start import evaluate_loaded, load_data_and_model

    overrides = overrides or {}
    loaded = load_data_and_model(model_file, edit_config=lambda c: apply_overrides(c, overrides))
    return dict(evaluate_loaded(*loaded), overrides=overrides)


def main(argv=None):
    args, extra = build_parser().parse_known_args(argv)
    overrides = parse_overrides(extra)  # kept here: a checkpoint's config never reads sys.argv

    def job():
        print("EVAL " + json.dumps(evaluate_checkpoint(args.checkpoint, overrides), sort_keys=True))
        return 0

    return run_reporting_user_errors(job)


if __name__ == "__main__":
    sys.exit(main())
