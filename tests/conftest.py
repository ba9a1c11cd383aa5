"""Shared fixtures: every test runs in its own temp working directory (RecBole writes
./log, ./saved there), and a tiny synthetic atomic dataset is written on demand."""
import csv
import os
import random
from collections import defaultdict

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


@pytest.fixture(autouse=True)
def _in_tmp_workdir(tmp_path, monkeypatch):
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setattr("sys.argv", ["pytest"])  # RecBole's Config reads sys.argv
    monkeypatch.setenv("HYMIREC_CACHE", str(tmp_path / "cache"))  # never the user's cache
    return workdir


def write_tiny_dataset(root, name="tiny", n_users=40, n_items=30, seed=0, interleaved=False,
                       min_len=8, max_len=16):
    """RecBole atomic files ``root/name/name.{inter,item}`` in ml-100k's column layout.

    Each user walks through one genre's items in order, so sequences have structure a
    sequential model can pick up; timestamps are strictly increasing per user. Users follow
    one another in time, or take turns (``interleaved``, as in real logs: sorting all rows by
    time then separates each user's rows).
    """
    rng = random.Random(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for item in range(1, n_items + 1):
            genre = GENRES[item % len(GENRES)]
            f.write(f"{item}\tMovie Number {item}\t{1980 + item % 20}\t{genre}\n")
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for user in range(1, n_users + 1):
            start = rng.randrange(n_items)
            length = rng.randint(min_len, max_len)
            for step in range(length):
                item = (start + step * len(GENRES)) % n_items + 1
                time = step * 1000 + user if interleaved else user * 1000 + step
                f.write(f"{user}\t{item}\t{rng.randint(1, 5)}\t{1_000_000 + time}\n")
    return folder


def true_sequences(data_path, dataset):
    """user id -> item ids in time order, read straight from the atomic file."""
    rows = defaultdict(list)
    with open(os.path.join(data_path, "tiny", "tiny.inter")) as f:
        for record in csv.DictReader(f, delimiter="\t"):
            rows[record["user_id:token"]].append((float(record["timestamp:float"]),
                                                   record["item_id:token"]))
    return {int(dataset.token2id("user_id", user)): [int(dataset.token2id("item_id", i))
                                                     for _, i in sorted(seq)]
            for user, seq in rows.items()}


@pytest.fixture
def tiny_data_path(tmp_path):
    """Folder that holds the ``tiny`` dataset: pass it as ``data_path``."""
    root = tmp_path / "data"
    write_tiny_dataset(str(root))
    return str(root)


# Small, fast settings shared by the end-to-end tests.
TINY_RUN = {
    "epochs": 1,
    "train_batch_size": 64,
    "eval_batch_size": 256,
    "MAX_ITEM_LIST_LENGTH": 10,
    "hidden_size": 16,
    "inner_size": 32,
    "n_layers": 1,
    "n_heads": 1,
    "metrics": ["Recall", "NDCG", "MRR", "Hit"],
    "topk": [5, 10],
    "valid_metric": "NDCG@10",
    "show_progress": False,
    "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
}


def tiny_hymirec_settings(data_path, llm_path, **overrides):
    """A HyMiRec config small enough for a test: tiny LLM, 8 codewords, short windows."""
    settings = {k: v for k, v in TINY_RUN.items()
                if k not in ("hidden_size", "inner_size", "n_layers", "n_heads")}
    settings.update(
        data_path=data_path, llm_path=llm_path,
        load_col={"inter": ["user_id", "item_id", "rating", "timestamp"],
                  "item": ["item_id", "movie_title", "release_year", "class"]},
        item_text_fields=["movie_title", "release_year", "class"],
        codebook_size=8, long_seq_len=12, MAX_ITEM_LIST_LENGTH=4, dmil_window=3,
        n_interests=2, n_coarse_interests=2, light_hidden_size=16, embedding_size=16,
        learning_rate=0.005,
        precision="fp32",  # results must not depend on the CPU; bf16 has its own tests
    )
    settings.update(overrides)
    return settings


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """``(data_path, llm_path, cache_dir)`` for HyMiRec tests: the tiny dataset, a tiny
    random Llama and a cache folder, shared by the tests of one module."""
    from tiny_llm import make_tiny_llm

    root = tmp_path_factory.mktemp("hymirec")
    write_tiny_dataset(str(root / "data"))
    make_tiny_llm(str(root / "llm"), arch="llama")
    return str(root / "data"), str(root / "llm"), str(root / "cache")
