"""Which leaderboard rows differ only in ``seed`` (the page's "Over seeds" table).

One seed's NDCG@10 moves by about as much as many of the choices a page compares, so a
page that holds the same configuration under several seeds shows their mean and spread
next to each other. Two rows belong together when their commands are the same once the
``--seed=`` override is dropped (the order of the ``--key=value`` overrides does not count).
"""
import yaml

RECBOLE_DEFAULT_SEED = 2020  # RecBole's overall.yaml


def _option_value(command, option):
    return command[command.index(option) + 1] if option in command[:-1] else None


def _seed_in_files(paths):
    """The ``seed`` of the last config file that sets one (None: no file sets it); "?"
    when a file cannot be read (the page is rendered away from the run's directory)."""
    seed = None
    for path in paths:
        try:
            with open(path) as f:
                values = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError):
            return "?"
        if isinstance(values, dict) and "seed" in values:
            seed = values["seed"]
    return seed


def row_seed(row):
    """The seed a row ran with: its ``--seed=`` override, else its config files' ``seed``,
    else RecBole's default."""
    command = row.get("command") or []
    overrides = [a for a in command if a.startswith("--seed=")]
    if overrides:
        return overrides[-1].split("=", 1)[1]
    seed = _seed_in_files((_option_value(command, "--config_files") or "").split())
    return RECBOLE_DEFAULT_SEED if seed is None else seed


def configuration_key(row):
    """The row's command without the interpreter, the CLI path and the seed override."""
    command = list(row.get("command") or [])
    command = command[command.index("-m"):] if "-m" in command else command
    overrides = sorted(a for a in command if a.startswith("--") and "=" in a
                       and not a.startswith("--seed="))
    others = [a for a in command if not (a.startswith("--") and "=" in a)]
    return tuple(others + overrides)


def seed_groups(rows):
    """``[(row numbers, rows)]`` for each configuration run under two or more seeds, in the
    order of its first row; failed rows and rows without a test result are left out."""
    groups = {}
    for number, row in enumerate(rows, 1):
        if row.get("status") == "ok" and (row.get("result") or {}).get("test_result"):
            groups.setdefault(configuration_key(row), []).append((number, row))
    return [([n for n, _ in members], [r for _, r in members])
            for members in groups.values()
            if len({str(row_seed(r)) for _, r in members}) >= 2]
