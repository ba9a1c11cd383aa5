"""properties/ is found from an installed wheel, away from the checkout."""
import glob
import os
import subprocess
import sys

from conftest import REPO_ROOT

PROBE = (
    "import recbole_hymirec, recbole_hymirec.config as c, os;"
    "print(recbole_hymirec.__file__); print(c.properties_dir());"
    "print(all(os.path.isfile(os.path.join(c.properties_dir(), f))"
    " for f in ('overall.yaml', 'dataset/ml-100k.yaml', 'model/HyMiRec.yaml',"
    " 'benchmark/ml-100k.yaml', 'presets/hymirec_cpu.yaml')))"
)


def test_wheel_ships_properties(tmp_path):
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheel_dir), REPO_ROOT], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = glob.glob(str(wheel_dir / "recbole_hymirec-*.whl"))
    assert len(wheel) == 1
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel[0]],
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
