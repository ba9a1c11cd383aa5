"""Seeded runs that stay bit-identical.

``init_seed``: RecBole's ``init_seed`` seeds Python, numpy and torch and, with ``reproducibility``, pins
cuDNN; it leaves torch's nondeterministic kernels on. On the CPU the backward of an
advanced-indexing gather (``x[rows, cols]`` with repeated rows, as in a loss that gathers each
target's matched interest) adds into the gradient from both threads with atomics, so the
summation order, and with it the last bits of the gradient, depends on how the threads were
scheduled: two runs of one seed drift apart as soon as the machine is busy. With
``reproducibility: True`` torch's deterministic implementations are used instead (an op that
has none warns), and cuBLAS gets the fixed workspace it needs for deterministic results.

``random_state_kept``: work that runs only on a cold cache must not move the seeded streams.

RecBole seeds torch, numpy and ``random`` once before building the model; everything after
(weight init, batch order, dropout) reads those streams. Converting the packaged LLM or
embedding the item texts runs only when its cache is missing, and draws random numbers
(transformers initialises weights before loading them): without this guard the first run on
a fresh machine trains on other draws than every later run with the same seed.
"""
import os
import random
from contextlib import contextmanager

import numpy as np
import torch
from recbole.utils import init_seed as recbole_init_seed


@contextmanager
def random_state_kept():
    """Run the block, then put torch's (CPU and CUDA), numpy's and ``random``'s states back."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def init_seed(seed, reproducibility):
    """RecBole's seeding, plus torch's deterministic kernels when ``reproducibility`` is set."""
    recbole_init_seed(seed, reproducibility)
    if reproducibility:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(reproducibility), warn_only=True)
