"""Small helpers for runs with several processes (torch.distributed)."""
from contextlib import contextmanager

import torch.distributed as dist


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def is_rank_zero():
    return not is_distributed() or dist.get_rank() == 0


@contextmanager
def rank_zero_first():
    """Rank 0 runs the block first (e.g. fills a cache); the other ranks wait, then run it
    too (and find the cache filled). A no-op in a single process."""
    if not is_rank_zero():
        dist.barrier()
    yield
    if is_distributed() and is_rank_zero():
        dist.barrier()


def barrier():
    if is_distributed():
        dist.barrier()
