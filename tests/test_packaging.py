"""The wheel: properties/ is found from an installed wheel, away from the checkout, and the
wheel holds every property file, the console script and the licence."""
import fnmatch
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO_ROOT

BUILD_LEFTOVERS = (".git", ".venv", "build", "dist", "*.egg-info", "log", "log_tensorboard",
                   "saved", "dataset")
PROBE = (
    "import recbole_hymirec, recbole_hymirec.config as c, os;"
    "print(recbole_hymirec.__file__); print(c.properties_dir());"
    "print(all(os.path.isfile(os.path.join(c.properties_dir(), f))"
    " for f in ('overall.yaml', 'dataset/ml-100k.yaml', 'model/HyMiRec.yaml',"
    " 'benchmark/ml-100k.yaml', 'presets/hymirec_cpu.yaml')))"
)


def _top_level_leftovers(folder, names):
    """Build outputs and run outputs at the checkout's top (properties/dataset/ is kept)."""
    if os.path.abspath(folder) != os.path.abspath(REPO_ROOT):
        return {n for n in names if n == "__pycache__"}
    return {n for n in names if any(fnmatch.fnmatch(n, p) for p in BUILD_LEFTOVERS)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The path of a wheel built from the checkout."""
    wheel_dir = tmp_path_factory.mktemp("wheel")
    # a copy without build outputs: an old build/ or *.egg-info would add files of its own
    source = tmp_path_factory.mktemp("source") / "checkout"
    shutil.copytree(REPO_ROOT, source, ignore=_top_level_leftovers)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheel_dir), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (path,) = glob.glob(str(wheel_dir / "recbole_hymirec-*.whl"))
    return path


def test_wheel_holds_every_property_file_the_console_script_and_the_licence(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    props = os.path.join(REPO_ROOT, "properties")
    shipped = [os.path.relpath(p, props).replace(os.sep, "/") for pattern in ("*.yaml", "*/*.yaml",
               "hyper/*.hyper") for p in glob.glob(os.path.join(props, pattern))]
    assert any(p.startswith("hyper/") for p in shipped) and len(shipped) > 15
    missing = [p for p in shipped if f"recbole_hymirec/properties/{p}" not in names]
    assert missing == []
    assert "run_recbole_hymirec.py" in names and "recbole_hymirec/__main__.py" in names
    assert "[console_scripts]\nrecbole_hymirec = run_recbole_hymirec:main" in scripts
    assert any(n.endswith("LICENSE") for n in names)


def test_wheel_ships_properties(tmp_path, wheel):
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel],
        capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]

    env = dict(os.environ, PYTHONPATH=str(site))
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=str(tmp_path), env=env,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    package_file, props, has_yaml = probe.stdout.split()
    assert package_file.startswith(str(site))  # the wheel's copy, not the checkout
    assert props == os.path.join(str(site), "recbole_hymirec", "properties")
    assert has_yaml == "True"
