"""Cold-cache work (LLM conversion, item embeddings) leaves the seeded random streams as they
were: the first run on a fresh machine trains on the same draws as every later run."""
import random

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from recbole_hymirec.model import embedding_cache as cache
from recbole_hymirec.model import llm
from recbole_hymirec.model.random_state import random_state_kept
from tiny_llm import make_tiny_llm

KEY = {"llm": "hf:tiny:abc", "items": ["[PAD]", "1", "2"]}


def _seed():
    torch.manual_seed(7), np.random.seed(7), random.seed(7)


def _next_draws():
    """The next number of each stream (the test then compares against an untouched run)."""
    return torch.rand(1).item(), float(np.random.rand()), random.random()


def _drawing(value):
    """What cold-cache work does: it draws from all three streams."""
    torch.randn(100), np.random.rand(100), random.random()
    return value


def _draws_after(block):
    _seed()
    block()
    return _next_draws()


def test_block_that_draws_leaves_every_stream_where_it_was():
    untouched = _draws_after(lambda: None)

    def guarded():
        with random_state_kept():
            _drawing(None)
    assert _draws_after(guarded) == untouched
    assert _draws_after(lambda: _drawing(None)) != untouched  # the draws do move them unguarded


def test_embedding_cache_miss_draws_nothing_for_later(tmp_path):
    value = torch.ones(3, 4)
    untouched = _draws_after(lambda: None)
    miss = _draws_after(lambda: cache.cached_item_embeddings(str(tmp_path / "c"), KEY,
                                                          lambda: _drawing(value)))
    hit = _draws_after(lambda: cache.cached_item_embeddings(str(tmp_path / "c"), KEY,
                                                         lambda: _drawing(value)))
    assert miss == hit == untouched


def test_first_gguf_conversion_draws_nothing_for_later(tmp_path, monkeypatch):
    tiny = make_tiny_llm(str(tmp_path / "tiny-llama"), arch="llama", num_layers=2)
    monkeypatch.setenv("HYMIREC_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)))

    def drawing_loader(path):  # transformers' GGUF loader initialises weights before filling them
        return _drawing((AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)))

    monkeypatch.setattr(llm, "_load_gguf_raw", drawing_loader)
    converted = llm.converted_gguf_dir(str(gguf))
    cold = _draws_after(lambda: llm.ensure_converted(str(gguf)))
    assert llm.ensure_converted(str(gguf)) == converted  # converted on the cold call
    assert cold == _draws_after(lambda: llm.ensure_converted(str(gguf))) == _draws_after(lambda: None)
