"""Two CPU ranks (gloo) through RecBole's DDP path give the single-process result."""
import socket

import pytest

from conftest import TINY_RUN
from recbole_hymirec.quick_start import run

# With learning_rate 0 the model stays at its (rank-0, broadcast) initial weights, so the
# only difference left is how evaluation is sharded over ranks and reduced: each rank rounds
# its metrics to 4 decimals before the weighted mean (measured: at most 1e-4 apart).
TOLERANCE = 1e-3


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_two_cpu_ranks_match_one_process(tiny_data_path):
    settings = dict(TINY_RUN, data_path=tiny_data_path, learning_rate=0.0, epochs=1)
    single = run("SASRec", "tiny", config_dict=dict(settings))
    double = run("SASRec", "tiny", config_dict=dict(settings), nproc=2, ip="127.0.0.1",
                 port=_free_port())
    assert double is not None, "rank 0 returned no result"
    assert set(double["test_result"]) == set(single["test_result"])
    for key, value in single["test_result"].items():
        assert double["test_result"][key] == pytest.approx(value, abs=TOLERANCE), key


def test_hymirec_on_two_cpu_ranks(tiny_data_path, tmp_path):
    from conftest import tiny_hymirec_settings
    from tiny_llm import make_tiny_llm

    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"), learning_rate=0.0)
    single = run("HyMiRec", "tiny", config_dict=dict(settings))
    double = run("HyMiRec", "tiny", config_dict=dict(settings), nproc=2, ip="127.0.0.1",
                 port=_free_port())
    assert double is not None, "rank 0 returned no result"
    for key, value in single["test_result"].items():
        assert double["test_result"][key] == pytest.approx(value, abs=TOLERANCE), key


def _report_shared_name(rank, port, queue):
    import torch.distributed as dist

    from recbole_hymirec.distributed import from_rank_zero

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    # Each rank stamps its own name, as RecBole's trainer does with its own clock.
    queue.put((rank, from_rank_zero(f"HyMiRec-rank{rank}.pth")))
    dist.destroy_process_group()


def test_every_rank_gets_rank_zeros_checkpoint_name():
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_report_shared_name, args=(_free_port(), queue), nprocs=2, join=True)
    names = dict(queue.get() for _ in range(2))
    assert names == {0: "HyMiRec-rank0.pth", 1: "HyMiRec-rank0.pth"}


def test_from_rank_zero_is_the_value_in_one_process():
    from recbole_hymirec.distributed import from_rank_zero

    assert from_rank_zero("HyMiRec-x.pth") == "HyMiRec-x.pth"
