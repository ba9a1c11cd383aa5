"""Work that runs only on a cold cache must not move the seeded random streams.

RecBole seeds torch, numpy and ``random`` once before building the model; everything after
(weight init, batch order, dropout) reads those streams. Converting the packaged LLM or
embedding the item texts runs only when its cache is missing, and draws random numbers
(transformers initialises weights before loading them): without this guard the first run on
a fresh machine trains on other draws than every later run with the same seed.
"""
import random
from contextlib import contextmanager

import numpy as np
import torch


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
