"""Every command line the repository prints is a module of ``recbole_hymirec.tools`` (or the
package itself) that runs as ``python -m``. CHANGELOG.md is left out: it names old commands."""
import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

PRINTED_IN = ["README.md", "Makefile"] + [
    os.path.relpath(p, REPO_ROOT) for pattern in ("results/**/*.md", "properties/**/*.yaml",
                                                  "docs/**/*.md", "recbole_hymirec/**/*.py")
    for p in glob.glob(os.path.join(REPO_ROOT, pattern), recursive=True)]
COMMAND = re.compile(r"python -m (recbole_hymirec(?:\.\w+)*)")


def printed_modules():
    modules = set()
    for path in PRINTED_IN:
        with open(os.path.join(REPO_ROOT, path), encoding="utf-8") as f:
            modules |= {(path, m) for m in COMMAND.findall(f.read())}
    return sorted(modules)


def tool_names():
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in
                  glob.glob(os.path.join(REPO_ROOT, "recbole_hymirec", "tools", "[!_]*.py")))


def module_file(module):
    """The checkout's source file that ``python -m module`` runs (a package: its __main__)."""
    path = os.path.join(REPO_ROOT, *module.split("."))
    return os.path.join(path, "__main__.py") if os.path.isdir(path) else path + ".py"


@pytest.mark.parametrize("where,module", printed_modules(), ids=lambda v: str(v))
def test_printed_command_names_a_runnable_module(where, module):
    path = module_file(module)
    assert os.path.isfile(path), f"{where} prints `python -m {module}`, which does not exist"
    with open(path, encoding="utf-8") as f:
        assert 'if __name__ == "__main__":' in f.read(), f"{module} is no command line"


def test_no_tool_is_left_at_the_package_top():
    assert len(tool_names()) >= 10
    assert [n for n in tool_names() if os.path.exists(module_file(f"recbole_hymirec.{n}"))] == []


@pytest.mark.parametrize("module", ["recbole_hymirec", "recbole_hymirec.tools.leaderboard"])
def test_module_runs_from_the_command_line(module):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", module, "--help"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: ")
