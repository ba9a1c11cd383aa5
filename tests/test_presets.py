"""Protocol files hold protocol keys, presets hold every budget key, and every command the
README, the docs, the Makefile and the results pages print runs its preset's budget."""
import glob
import os
import re
import shlex
import sys

import pytest
import yaml

from conftest import REPO_ROOT
from recbole_hymirec.config import Config
from recbole_hymirec.presets import (BUDGET_KEYS, MODEL_BUDGET_KEYS, PROTOCOL_KEYS, budget_keys,
                                     last_preset, missing_budget_keys)
from recbole_hymirec.tools import entries, leaderboard

PROTOCOLS = sorted(glob.glob(os.path.join(REPO_ROOT, "properties", "benchmark", "*.yaml")))
PRESETS = sorted(glob.glob(os.path.join(REPO_ROOT, "properties", "presets", "*.yaml")))
PAGES = [os.path.join(REPO_ROOT, "README.md")] + sorted(
    glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))) + sorted(
    glob.glob(os.path.join(REPO_ROOT, "results", "**", "*.md"), recursive=True))
# Commands of these tools train or time a model: they name a preset.
TRAINING_TOOLS = ("run_recbole_hymirec.py", "recbole_hymirec.tools.leaderboard",
                  "recbole_hymirec.tools.bench", "recbole_hymirec.tools.run_hyper")
# Printed commands that are no run: the synopsis, an error example, a second node's flags.
NOT_RUNS = ("[-m MODEL]", "NoSuchModel", "run_recbole_hymirec.py ...")
# Each tool's model when its command names none.
DEFAULT_MODEL = {"recbole_hymirec.tools.bench": "HyMiRec", "run_recbole_hymirec.py": "HyMiRec"}


def _read_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _rel(path):
    return os.path.relpath(path, REPO_ROOT)


# ---------------------------------------------------------------- the files

@pytest.mark.parametrize("path", PROTOCOLS, ids=_rel)
def test_protocol_files_hold_protocol_keys_only(path):
    assert set(_read_yaml(path)) - PROTOCOL_KEYS == set()


@pytest.mark.parametrize("path", PRESETS, ids=_rel)
def test_presets_set_every_budget_key(path):
    assert set(BUDGET_KEYS) - set(_read_yaml(path)) == set()


@pytest.mark.parametrize("path", [p for p in PRESETS if "hymirec" in os.path.basename(p)],
                         ids=_rel)
def test_hymirec_presets_set_its_own_budget_keys_too(path):
    assert set(budget_keys("HyMiRec")) - set(_read_yaml(path)) == set()


def test_no_protocol_key_is_a_budget_key():
    every_budget_key = set(BUDGET_KEYS).union(*MODEL_BUDGET_KEYS.values())
    assert PROTOCOL_KEYS & every_budget_key == set()


# ---------------------------------------------------------------- the stacking

def resolve(model, dataset, files, overrides, monkeypatch):
    """The final config of one model's run, as run_recbole_hymirec.py builds it (the
    overrides on sys.argv); the dataset is not loaded."""
    monkeypatch.setattr("sys.argv", ["run_recbole_hymirec.py", *overrides])
    paths = [os.path.join(REPO_ROOT, f) for f in files]
    return Config(model=model, dataset=dataset, config_file_list=paths)


def _budget(config, keys):
    return {key: config[key] for key in keys}


def test_the_models_preset_wins_over_the_shared_preset_and_the_protocol(monkeypatch):
    argv = ["-m", "HyMiRec,SASRec", "--config_files",
            "properties/benchmark/ml-100k.yaml properties/presets/baselines_ml-100k.yaml",
            "--model_config", "HyMiRec=properties/presets/hymirec_cpu.yaml"]
    for model, preset in (("HyMiRec", "hymirec_cpu.yaml"), ("SASRec", "baselines_ml-100k.yaml")):
        (run,) = [r for r in leaderboard_runs(argv) if r[0] == model]
        keys = budget_keys(model)
        config = resolve(*run, monkeypatch)
        preset_values = _read_yaml(os.path.join(REPO_ROOT, "properties", "presets", preset))
        assert _budget(config, keys) == {key: preset_values[key] for key in keys}


def test_model_config_files_stack_after_the_shared_ones_in_the_order_given():
    per_model = leaderboard.model_files(["HyMiRec=b.yaml", "HyMiRec=c.yaml d.yaml"])
    assert leaderboard.model_stack(["a.yaml"], per_model, "HyMiRec") == [
        "a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    assert leaderboard.model_stack(["a.yaml"], per_model, "SASRec") == ["a.yaml"]


def test_an_entrys_own_files_stack_after_its_models_for_that_entry_only():
    per_model = leaderboard.model_files(["HyMiRec=b.yaml", "HyMiRec(epochs=8,x=1)=c.yaml"])
    assert per_model == {"HyMiRec": ["b.yaml"], "HyMiRec(epochs=8,x=1)": ["c.yaml"]}
    stack = leaderboard.model_stack
    assert stack(["a.yaml"], per_model, "HyMiRec", "HyMiRec(epochs=8,x=1)") == [
        "a.yaml", "b.yaml", "c.yaml"]
    assert stack(["a.yaml"], per_model, "HyMiRec", "HyMiRec(epochs=8,x=1,seed=7)") == [
        "a.yaml", "b.yaml", "c.yaml"]  # --seeds keeps the entry's files
    assert stack(["a.yaml"], per_model, "HyMiRec", "HyMiRec(epochs=8)") == ["a.yaml", "b.yaml"]
    assert stack(["a.yaml"], per_model, "HyMiRec", "HyMiRec") == ["a.yaml", "b.yaml"]
    with pytest.raises(SystemExit, match=r"MODEL\(key=value,...\)=file.yaml"):
        leaderboard.model_files(["HyMiRec(epochs=8)="])
    # overrides in another order or spaced still name the entry; a path may hold ")="
    spaced = leaderboard.model_files(["HyMiRec(x=1, epochs=8)=d)=e.yaml", "HyMiRec=a(b)=c.yaml"])
    assert spaced == {"HyMiRec(epochs=8,x=1)": ["d)=e.yaml"], "HyMiRec": ["a(b)=c.yaml"]}
    assert stack([], spaced, "HyMiRec", "HyMiRec(epochs=8,x=1,seed=3)") == [
        "a(b)=c.yaml", "d)=e.yaml"]


def test_a_model_config_entry_that_matches_no_entry_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"--model_config HyMiRec\(epochs=9\)=\.\.\. matches no "
                                         r"entry of --models"):
        leaderboard.main(["-d", "tiny", "-m", "HyMiRec(epochs=8)", "--out", str(tmp_path),
                          "--model_config", "HyMiRec(epochs=9)=p.yaml"])


def test_a_stack_whose_last_preset_misses_a_models_budget_key_is_named():
    baselines = os.path.join(REPO_ROOT, "properties", "presets", "baselines_ml-100k.yaml")
    hymirec = os.path.join(REPO_ROOT, "properties", "presets", "hymirec_cpu.yaml")
    assert missing_budget_keys("HyMiRec", [baselines]) == sorted(MODEL_BUDGET_KEYS["HyMiRec"])
    warning = leaderboard.budget_warning("HyMiRec", [baselines])
    assert "long_seq_len" in warning and "--model_config HyMiRec=" in warning
    assert leaderboard.budget_warning("HyMiRec", [baselines, hymirec]) is None
    assert leaderboard.budget_warning("SASRec", [baselines]) is None
    assert leaderboard.budget_warning("SASRec", []) is None  # no preset: nothing to check


# ---------------------------------------------------------------- the printed commands

def _drop_optional(text):
    """``[--seeds 2020,2021]`` and other optional parts of a synopsis are left out."""
    return re.sub(r"\s\[--[^\]]*\]", "", text)


def _fenced_commands(text):
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").split("\n"):
            line = line.strip().removeprefix("$ ")
            if line.startswith(("python ", ".venv/bin/python ")):
                commands.append(line)
    return commands


def _inline_commands(text):
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = (" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose))
    return [span for span in spans  # a tool's bare name in prose is no command
            if span.startswith(("python ", ".venv/bin/python ", "run_recbole_hymirec.py "))]


def printed_commands(path):
    """The commands of training tools a page prints (fenced blocks and inline code)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found = _fenced_commands(text) + _inline_commands(text)
    return [c for c in found
            if any(tool in c for tool in TRAINING_TOOLS) and not any(n in c for n in NOT_RUNS)]


def makefile_demo_command():
    with open(os.path.join(REPO_ROOT, "Makefile"), encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    (line,) = [l for l in text.split("\n") if "recbole_hymirec.tools.leaderboard" in l]
    return line.strip().replace("$(PYTHON)", "python")


def _argv(command):
    """``(tool, its arguments)`` of a printed command line."""
    argv = shlex.split(_drop_optional(command), comments=True)
    for i, arg in enumerate(argv):
        if arg.endswith("run_recbole_hymirec.py"):
            return "run_recbole_hymirec.py", argv[i + 1:]
        if arg == "-m" and argv[i + 1].startswith("recbole_hymirec."):
            return argv[i + 1], argv[i + 2:]
    raise AssertionError(f"no training tool in {command!r}")


def leaderboard_runs(argv):
    """``(model, dataset, files, overrides)`` of each row a leaderboard command runs (rows
    written ``MODEL(...)`` on a page are left out)."""
    args, extra = leaderboard.build_parser().parse_known_args(argv)
    shared = args.config_files.split() if args.config_files else []
    per_model = leaderboard.model_files(args.model_config)
    runs = []
    for entry in entries.split_model_list(args.models):
        if "..." in entry:
            continue
        model, own = entries.parse_entry(entry)
        runs.append((model, args.dataset, leaderboard.model_stack(shared, per_model, model, entry),
                     entries.merge_overrides(extra, own)))
    return runs


def _single_run(tool, argv):
    """``(model, dataset, files, overrides)`` of a run_recbole_hymirec.py, bench or run_hyper
    command: their -m, -d and --config_files; ``--key=value`` are overrides."""
    model, dataset, files, overrides = DEFAULT_MODEL.get(tool), "ml-100k", [], []
    flags = iter(argv)
    for arg in flags:
        if arg in ("-m", "--model"):
            model = next(flags)
        elif arg in ("-d", "--dataset"):
            dataset = next(flags)
        elif arg == "--config_files":
            files = next(flags).split()
        elif re.match(r"--\w+=", arg):
            overrides.append(arg)
    return [(model, dataset, files, overrides)]


def runs_of(command):
    tool, argv = _argv(command)
    if tool == "recbole_hymirec.tools.leaderboard":
        return leaderboard_runs(argv)
    return _single_run(tool, argv)


def _all_runs():
    """Each distinct run of every printed command, with where it was printed."""
    seen, cases = set(), []
    commands = [(_rel(p), c) for p in PAGES for c in printed_commands(p)]
    for where, command in commands + [("Makefile", makefile_demo_command())]:
        for model, dataset, files, overrides in runs_of(command):
            key = (model, dataset, tuple(files), tuple(o for o in overrides
                                                      if not o.startswith("--seed=")))
            if key not in seen:
                seen.add(key)
                cases.append((where, key))
    return cases


RUNS = _all_runs()


def test_the_pages_print_commands_of_every_training_tool():
    printed = {_argv(c)[0] for p in PAGES for c in printed_commands(p)}
    assert len(RUNS) > 20 and printed == set(TRAINING_TOOLS)


@pytest.mark.parametrize("where,run", RUNS, ids=[f"{w}:{r[0]}:{i}" for i, (w, r) in enumerate(RUNS)])
def test_printed_command_runs_its_presets_budget(where, run, monkeypatch):
    model, dataset, files, overrides = run
    preset = last_preset(files)
    assert preset, f"{where}: a {model} command names no preset: {files}"
    values = _read_yaml(os.path.join(REPO_ROOT, preset))
    assert set(budget_keys(model)) <= set(values), f"{where}: {preset} is no preset for {model}"
    overridden = {o[2:].split("=", 1)[0] for o in overrides}
    keys = [key for key in budget_keys(model) if key not in overridden]
    config = resolve(model, dataset, files, overrides, monkeypatch)
    assert _budget(config, keys) == {key: values[key] for key in keys}


def test_design_gpu_command_runs_hymirec_on_its_rows_windows(monkeypatch):
    """The design notes' GPU run of rows 20/21/25's model keys reads the same windows as
    those rows (N = 10, L_long = 100) with their batch and epochs, whatever the protocol
    file or the baselines' budget set."""
    design = os.path.join(REPO_ROOT, "docs", "design.md")
    (command,) = [c for c in printed_commands(design) if "hymirec_tuned" in c]
    (run,) = [r for r in runs_of(command) if r[0] == "HyMiRec"]
    config = resolve(*run, monkeypatch)
    assert _budget(config, ["MAX_ITEM_LIST_LENGTH", "long_seq_len", "train_batch_size",
                            "epochs"]) == {"MAX_ITEM_LIST_LENGTH": 10, "long_seq_len": 100,
                                           "train_batch_size": 32, "epochs": 12}
