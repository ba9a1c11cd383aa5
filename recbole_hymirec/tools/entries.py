"""Model entries of a leaderboard: ``HyMiRec``, ``HyMiRec(n_interests=1,dmil_window=1)``.

An entry names a model and, in brackets, its own ``key=value`` overrides; ``--seeds`` turns
every entry into one entry per seed. ``--model_config`` files belong to a model (every entry of
it) or to one entry (``"HyMiRec(epochs=8)=preset.yaml"``), the entry's after the model's.
"""


def split_model_list(text):
    """``"A,B(x=1,y=[p,q]),C"`` -> ``["A", "B(x=1,y=[p,q])", "C"]`` (commas inside brackets kept)."""
    entries, depth, current = [], 0, ""
    for char in text:
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth == 0:
            entries.append(current.strip())
            current = ""
        else:
            current += char
    entries.append(current.strip())
    return [e for e in entries if e]


def parse_entry(entry):
    """``"HyMiRec(n_interests=1,dmil_window=1)"`` -> ``("HyMiRec", ["--n_interests=1", ...])``."""
    model, bracket, rest = entry.partition("(")
    if not bracket:
        return entry, []
    if not rest.endswith(")") or not model.strip():
        raise SystemExit(f"error: model entry {entry!r}: write MODEL or MODEL(key=value,...)")
    pairs = split_model_list(rest[:-1])
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise SystemExit(f"error: model entry {entry!r}: {bad[0]!r} is not key=value. Fix: "
                         "write MODEL(key=value,key=value)")
    return model.strip(), [f"--{p}" for p in pairs]


def override_key(override):
    return override.split("=", 1)[0]


def merge_overrides(shared, own):
    """Shared ``--key=value`` overrides, with a variant's own value winning for its keys
    (RecBole refuses a key given twice on the command line)."""
    own_keys = {override_key(o) for o in own}
    return [o for o in shared if override_key(o) not in own_keys] + list(own)


def parse_seeds(text):
    """``"2020,2021"`` -> ``[2020, 2021]``; ``None`` -> ``[]`` (the protocol's own seed)."""
    if text is None:
        return []
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"error: --seeds {text!r}: write comma-separated integers, "
                         "e.g. --seeds 2020,2021") from None
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: --seeds {text!r} repeats a seed. Fix: give each seed once")
    return seeds


def entries_per_seed(entries, seeds):
    """Every entry once per seed, an entry's seeds next to each other: ``["S", "M(a=1)"],
    [1, 2]`` -> ``["S(seed=1)", "S(seed=2)", "M(a=1,seed=1)", "M(a=1,seed=2)"]``."""
    if not seeds:
        return list(entries)
    expanded = []
    for entry in entries:
        model, own = parse_entry(entry)
        if "--seed" in {override_key(o) for o in own}:
            raise SystemExit(f"error: model entry {entry!r} sets seed and --seeds is given. "
                             "Fix: drop one of the two")
        pairs = [o[len("--"):] for o in own]
        expanded += [f"{model}({','.join(pairs + [f'seed={seed}'])})" for seed in seeds]
    return expanded


def name_without_seed(entry):
    """``HyMiRec(a=1,seed=2021)`` -> ``HyMiRec(a=1)``; ``SASRec(seed=2021)`` -> ``SASRec``."""
    model, own = parse_entry(entry)
    kept = [o[2:] for o in own if override_key(o) != "--seed"]
    return f"{model}({','.join(kept)})" if kept else model


def canonical_entry(entry):
    """An entry's name with its overrides in sorted order: ``HyMiRec(b=2, a=1)`` ->
    ``HyMiRec(a=1,b=2)``, the form in which ``--model_config`` owners meet entries."""
    model, own = parse_entry(entry)
    return f"{model}({','.join(sorted(o[2:] for o in own))})" if own else model


def model_files(specs):
    """``["HyMiRec=a.yaml b.yaml", "HyMiRec(x=1)=c.yaml"]`` -> ``{"HyMiRec": ["a.yaml",
    "b.yaml"], "HyMiRec(x=1)": ["c.yaml"]}``: the key is a model or one entry of it (in
    :func:`canonical_entry` form)."""
    files = {}
    for spec in specs:
        is_entry = "(" in spec.partition("=")[0]
        owner, sep, paths = spec.partition(")=" if is_entry else "=")
        if not sep or not paths.strip() or not owner.strip():
            raise SystemExit(f"error: --model_config {spec!r}: write MODEL=file.yaml or "
                             "MODEL(key=value,...)=file.yaml")
        owner = canonical_entry(owner + ")") if is_entry else owner.strip()
        files.setdefault(owner, []).extend(paths.split())
    return files


def unmatched_entry_owners(per_model, entries):
    """The entry owners of ``model_files`` (``MODEL(...)``) that no entry matches, with or
    without its ``seed=``."""
    known = {canonical_entry(name) for entry in entries
             for name in (entry, name_without_seed(entry))}
    return [owner for owner in per_model if "(" in owner and owner not in known]


def model_stack(shared, per_model, model, entry=None):
    """The config files of an entry's command, in load order (a later file wins): the shared
    files, then ``model``'s own ``--model_config`` files, then those of ``entry`` (matched with
    or without its ``seed=``, its overrides in any order)."""
    files = list(shared) + list(per_model.get(model, []))
    if entry is not None:
        owners = dict.fromkeys(canonical_entry(e) for e in (entry, name_without_seed(entry)))
        for owner in owners:
            if owner != model:
                files += per_model.get(owner, [])
    return files
