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


def from_rank_zero(value):
    """Rank 0's ``value`` on every rank (the value itself in a single process).

    For names each rank would otherwise derive on its own, e.g. RecBole's checkpoint file,
    stamped with each process's own clock: ranks that start a second apart disagree."""
    if not is_distributed():
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]
