"""One preset-shaped HyMiRec training on tiny data: prints ``LOSSES [...]``, every step's loss.

Run as ``python reproducible_run.py WORKDIR``; WORKDIR holds (or receives) the data and the
tiny LLM. Sizes follow the CPU preset where it matters for the arithmetic: 64 rows a step,
10 targets a row, K = 4, d = 64, so the loss's gathers and reductions run on both threads.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import tiny_hymirec_settings, write_tiny_dataset  # noqa: E402
from tiny_llm import make_tiny_llm  # noqa: E402


def main(workdir):
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    os.environ["HYMIREC_CACHE"] = os.path.join(workdir, "cache")
    if not os.path.isdir("data/tiny"):
        write_tiny_dataset("data", n_users=120, n_items=60, min_len=30, max_len=45)
    if not os.path.isdir("llm"):
        make_tiny_llm("llm", arch="llama", num_layers=2)

    from recbole_hymirec.model.hymirec import HyMiRec
    from recbole_hymirec.quick_start import run_recbole_hymirec

    losses = []
    calculate_loss = HyMiRec.calculate_loss

    def recorded(self, interaction):
        out = calculate_loss(self, interaction)
        losses.append(float(sum(out) if isinstance(out, tuple) else out))
        return out

    HyMiRec.calculate_loss = recorded
    settings = tiny_hymirec_settings(
        os.path.abspath("data"), os.path.abspath("llm"), epochs=2, train_batch_size=64,
        MAX_ITEM_LIST_LENGTH=10, long_seq_len=30, dmil_window=10, n_interests=4,
        n_coarse_interests=4, embedding_size=64, light_hidden_size=64, seed=7,
        reproducibility=True)
    run_recbole_hymirec("HyMiRec", "tiny", config_dict=settings, saved=False)
    print("LOSSES " + json.dumps([loss.hex() for loss in losses]))


if __name__ == "__main__":
    main(sys.argv[1])
