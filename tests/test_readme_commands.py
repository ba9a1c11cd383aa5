"""Every command the README and the docs show exists and parses: its module (or script)
imports, its flags are the tool's, its files exist and ``--help`` runs, so a rename or a
removed flag can never leave them behind."""
import contextlib
import glob
import importlib
import io
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

PAGES = [os.path.join(REPO_ROOT, "README.md")] + sorted(
    glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))
CLI_SCRIPT = "run_recbole_hymirec"  # run_recbole_hymirec.py, the recbole_hymirec command, python -m recbole_hymirec
# Tools whose parser takes no RecBole --key=value overrides.
NO_OVERRIDES = {"recbole_hymirec.tools.interest_report", "recbole_hymirec.tools.results_index",
                "recbole_hymirec.data.synthetic"}
FILE_FLAGS = ("--config_files", "--params_file", "--model_config")
PYTHON = r"(?:\.venv/bin/)?python"


def _drop_optional(text):
    """``[--rows 256]``, ``[-m MODEL]`` and other optional parts of a synopsis are left out."""
    return re.sub(r"\s\[-[^\]]*\]", "", text)


def shown_commands(path):
    """The shell lines of a page's ``bash`` blocks, continuation lines joined, ``$ `` and
    comments dropped."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").split("\n"):
            line = line.strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                lines.append(_drop_optional(line))
    return lines


def _props_dir():
    from recbole_hymirec.config import properties_dir
    return properties_dir()


def tool_of(argv):
    """``(module, its arguments)`` of a python / console-script command line, else None."""
    for i, arg in enumerate(argv):
        if re.fullmatch(PYTHON, arg) and argv[i + 1:i + 2] == ["-m"]:
            module = argv[i + 2]
            return (CLI_SCRIPT if module == "recbole_hymirec" else module), argv[i + 3:]
        if re.fullmatch(PYTHON, arg) and argv[i + 1:i + 2] != ["-c"] and \
                argv[i + 1].endswith("run_recbole_hymirec.py"):
            return CLI_SCRIPT, argv[i + 2:]
        if arg == "recbole_hymirec":
            return CLI_SCRIPT, argv[i + 1:]
    return None


def split_command(line):
    """shlex words of a line, with ``$PROPS`` (the README's installed properties folder)
    standing for the package's properties folder."""
    return shlex.split(line.replace("$PROPS", _props_dir()), comments=True)


SHOWN = [(os.path.relpath(p, REPO_ROOT), line) for p in PAGES for line in shown_commands(p)]
TOOL_LINES = [(where, line) for where, line in SHOWN if tool_of(shlex.split(line, comments=True))]


def test_the_pages_show_commands_of_every_tool():
    tools = {tool_of(shlex.split(line, comments=True))[0] for _, line in TOOL_LINES}
    assert {CLI_SCRIPT, "recbole_hymirec.tools.leaderboard", "recbole_hymirec.tools.results_index",
            "recbole_hymirec.tools.stage1", "recbole_hymirec.tools.bench", "recbole_hymirec.tools.split_report",
            "recbole_hymirec.tools.interest_report", "recbole_hymirec.tools.evaluate",
            "recbole_hymirec.tools.run_hyper", "recbole_hymirec.tools.synthetic"} <= tools


def _named_files(args, extra):
    """The property files a command names (``MODEL=a.yaml b.yaml`` for --model_config)."""
    named = []
    for flag in FILE_FLAGS:
        values = getattr(args, flag[2:], None) or []
        for value in values if isinstance(values, list) else [values]:
            named += value.split("=", 1)[-1].split()
    return [f for f in named if "properties/" in f]


@pytest.mark.parametrize("where,line", TOOL_LINES, ids=[f"{w}:{i}" for i, (w, _) in
                                                       enumerate(TOOL_LINES)])
def test_shown_command_parses_and_names_existing_files(where, line):
    module, argv = tool_of(split_command(line))
    parser = importlib.import_module(module).build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as err:
        raise AssertionError(f"{where}: `{line}` does not parse") from err
    allowed = [] if module in NO_OVERRIDES else [a for a in extra if re.match(r"--\w+=", a)]
    assert extra == allowed, f"{where}: `{line}`: {module} does not take {extra}"
    for name in _named_files(args, extra):
        path = name if os.path.isabs(name) else os.path.join(REPO_ROOT, name)
        assert os.path.isfile(path), f"{where}: `{line}` names {name}, which does not exist"


@pytest.mark.parametrize("module", sorted({tool_of(shlex.split(l, comments=True))[0]
                                           for _, l in TOOL_LINES}))
def test_help_runs(module):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).build_parser().parse_args(["--help"])
    assert exit_.value.code == 0 and out.getvalue().startswith("usage:")


def test_python_dash_m_package_and_the_script_print_help(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    for argv in (["-m", "recbole_hymirec", "--help"],
                 [os.path.join(REPO_ROOT, "run_recbole_hymirec.py"), "--help"]):
        run = subprocess.run([sys.executable, *argv], cwd=str(tmp_path), env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "--config_files" in run.stdout and "--nproc" in run.stdout


def test_the_console_script_is_the_cli():
    with open(os.path.join(REPO_ROOT, "setup.py"), encoding="utf-8") as f:
        setup = f.read()
    assert '"recbole_hymirec=run_recbole_hymirec:main"' in setup
    assert callable(importlib.import_module(CLI_SCRIPT).main)


def _makefile():
    with open(os.path.join(REPO_ROOT, "Makefile"), encoding="utf-8") as f:
        return f.read()


def test_shown_make_targets_exist():
    targets = {t for t in re.findall(r"^([\w-]+):", _makefile(), flags=re.M)}
    shown = {shlex.split(line)[1] for _, line in SHOWN if line.startswith("make ")}
    assert shown >= {"demo", "test"} and shown <= targets


def _no_deps_packages(text):
    return {w for line in text.split("\n") if "install" in line and "--no-deps" in line
            for w in line.split() if "==" in w}


def test_the_shown_no_deps_line_installs_what_the_makefile_does():
    shown = {w for _, line in SHOWN if line.startswith("pip install --no-deps")
             for w in line.split() if "==" in w}
    assert shown and shown == _no_deps_packages(_makefile())


def test_the_shown_python_snippets_run():
    """``python -c "..."`` lines (the installed properties folder) print an existing path."""
    snippets = [shlex.split(line.split("$(", 1)[-1].rstrip(")")) for _, line in SHOWN
                if "python -c" in line]
    assert snippets
    for argv in snippets:
        code = argv[argv.index("-c") + 1]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, {})  # noqa: S102 - the README's own one-liner
        assert os.path.isdir(out.getvalue().strip())


def test_the_readme_is_short():
    with open(PAGES[0], encoding="utf-8") as f:
        assert len(f.read().splitlines()) <= 250


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path):
    with open(path, encoding="utf-8") as f:
        return {_slug(h) for h in re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", f.read(),
                                                                      flags=re.S), flags=re.M)}


@pytest.mark.parametrize("page", PAGES + [os.path.join(REPO_ROOT, "results", "README.md")],
                         ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_links_reach_their_file_and_heading(page):
    with open(page, encoding="utf-8") as f:
        links = re.findall(r"\]\(([^)\s:]*)\)", f.read())
    for link in links:
        target, _, anchor = link.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else page
        assert os.path.exists(path), f"{page}: link {link} has no file"
        if anchor:
            assert anchor in _anchors(path), f"{page}: link {link} has no such heading"
