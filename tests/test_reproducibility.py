"""``reproducibility: True`` means bit-identical training, whatever else the machine runs."""
import json
import os
import subprocess
import sys

import torch

from conftest import REPO_ROOT
from recbole_hymirec.model.random_state import init_seed

RUN = os.path.join(REPO_ROOT, "tests", "reproducible_run.py")
BUSY_LOOP = "import time\nend = time.time() + 300\nwhile time.time() < end: pass"


def _step_losses(workdir):
    proc = subprocess.run([sys.executable, RUN, str(workdir)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("LOSSES ")][-1]
    return json.loads(line[len("LOSSES "):])


def test_reproducibility_switches_torch_to_deterministic_kernels():
    try:
        init_seed(7, True)
        assert torch.are_deterministic_algorithms_enabled()
        init_seed(7, False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_training_is_bit_identical_beside_a_cpu_heavy_load(tmp_path):
    """Two processes, the second sharing both cores with busy loops: every step's loss is the
    same float (a thread-order-dependent gradient shows within a few steps otherwise)."""
    quiet = _step_losses(tmp_path / "quiet")
    load = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(2)]
    try:
        loaded = _step_losses(tmp_path / "loaded")
    finally:
        for process in load:
            process.kill()
            process.wait()
    assert len(quiet) > 100
    assert loaded == quiet
