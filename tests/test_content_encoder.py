"""Content encoder: item texts from the raw .item file, special-token pooling, disk cache,
centring."""
import logging
import os

import pytest
import torch

from recbole_hymirec.data import item_text
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model import centring
from recbole_hymirec.model import content_encoder as ce
from recbole_hymirec.model import embedding_cache as cache
from recbole_hymirec.model.llm import load_causal_lm
from tiny_llm import make_tiny_llm

ITEM_FILE = (
    "item_id:token\tmovie_title:token_seq\trelease_year:float\tclass:token_seq\n"
    "1\tToy Story\t1995.0\tAnimation Children's Comedy\n"
    "2\tGoldenEye\t1995\tAction Adventure Thriller\n"
    "3\t\"Usual Suspects, The\"\t\tCrime\n"
    "4\tDr. Strangelove\t1963\t\n"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = make_tiny_llm(str(tmp_path_factory.mktemp("llm") / "tiny-llama"), arch="llama")
    model, tokenizer, _ = load_causal_lm(folder)
    return model, tokenizer


@pytest.fixture
def encoder(tiny_model):
    model, tokenizer = tiny_model
    return ce.ContentEncoder(model, tokenizer, max_text_len=48, batch_size=4)


@pytest.fixture
def item_dir(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.item").write_text(ITEM_FILE)
    return str(folder)


# ----------------------------------------------------------------------------- item texts

def test_default_template(item_dir):
    texts = item_text.read_item_texts(item_dir, "toy", ["[PAD]", "2", "1", "3", "4", "99"],
                               ["movie_title", "release_year", "class"])
    assert texts == [
        "unknown item",
        "title: GoldenEye. year: 1995. genres: Action Adventure Thriller.",
        "title: Toy Story. year: 1995. genres: Animation Children's Comedy.",  # 1995.0 -> 1995
        'title: "Usual Suspects, The". genres: Crime.',  # raw string, empty field skipped
        "title: Dr. Strangelove. year: 1963.",
        "unknown item",  # no row for item 99
    ]


def test_custom_template_and_typed_field_names(item_dir):
    texts = item_text.read_item_texts(item_dir, "toy", ["1"], ["movie_title:token_seq", "release_year"],
                               template="{movie_title} ({release_year})")
    assert texts == ["Toy Story (1995)"]


def test_unknown_field_lists_available_fields(item_dir):
    with pytest.raises(ConfigError) as err:
        item_text.read_item_texts(item_dir, "toy", ["1"], ["movie_title", "plot"])
    message = str(err.value)
    assert "['plot']" in message
    assert "available fields: ['item_id', 'movie_title', 'release_year', 'class']" in message


def test_template_field_outside_text_fields(item_dir):
    with pytest.raises(ConfigError, match=r"uses \['class'\]"):
        item_text.read_item_texts(item_dir, "toy", ["1"], ["movie_title"],
                           template="{movie_title} {class}")


def test_missing_item_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        item_text.read_item_texts(str(tmp_path), "nothing", ["1"], ["movie_title"])
    message = str(err.value)
    assert os.path.join(str(tmp_path), "nothing.item") in message and "Fix:" in message


# ----------------------------------------------------------------------------- encoder

def test_same_text_same_embedding_different_text_differs(encoder):
    emb = encoder.encode(["Toy Story", "GoldenEye", "Toy Story"], show_progress=False)
    assert emb.shape == (3, 32) and emb.dtype == torch.float32
    assert torch.equal(emb[0], emb[2])
    assert not torch.allclose(emb[0], emb[1], atol=1e-4)
    assert torch.allclose(encoder.encode(["Toy Story"], show_progress=False)[0], emb[0], atol=1e-6)


def test_padding_does_not_change_a_row(encoder):
    alone = encoder.encode(["Babe"], show_progress=False)
    long_text = "title: Shanghai Triad (Yao a yao yao dao waipo qiao). year: 1995."
    batch = encoder.encode([long_text, "Babe"], show_progress=False)
    assert torch.allclose(alone[0], batch[1], atol=1e-5)


def test_order_is_kept_across_length_sorted_batches(tiny_model):
    model, tokenizer = tiny_model
    enc = ce.ContentEncoder(model, tokenizer, batch_size=2)
    texts = ["a fairly long item title here", "b", "medium title", "xy", ""]
    together = enc.encode(texts, show_progress=False)
    for row, text in enumerate(texts):
        assert torch.allclose(together[row], enc.encode([text], show_progress=False)[0], atol=1e-5)


def test_text_is_truncated_to_max_len(tiny_model):
    model, tokenizer = tiny_model
    enc = ce.ContentEncoder(model, tokenizer, max_text_len=5)
    emb = enc.encode(["abcdeXXXX", "abcdeYYYY"], show_progress=False)
    assert torch.equal(emb[0], emb[1])


def test_special_token_is_learnable_and_used(encoder, tiny_model):
    _, tokenizer = tiny_model
    table = encoder.backbone.get_input_embeddings().weight
    assert torch.equal(encoder.special_token.data, table[tokenizer.eos_token_id])  # init from eos
    assert not any(p.requires_grad for p in encoder.backbone.parameters())  # frozen LLM
    ids, lengths = encoder.tokenize(["Toy Story", "Babe"])
    encoder(ids, lengths).sum().backward()
    assert encoder.special_token.grad is not None and encoder.special_token.grad.abs().sum() > 0
    before = encoder.encode(["Babe"], show_progress=False)
    with torch.no_grad():
        encoder.special_token.add_(1.0)
    assert not torch.allclose(before, encoder.encode(["Babe"], show_progress=False))


def test_special_token_init_from_named_token_and_bad_token(tiny_model):
    model, tokenizer = tiny_model
    enc = ce.ContentEncoder(model, tokenizer, special_token_init="a")
    table = enc.backbone.get_input_embeddings().weight
    assert torch.equal(enc.special_token.data, table[tokenizer.convert_tokens_to_ids("a")])
    with pytest.raises(ConfigError, match="not a token of the LLM vocabulary"):
        ce.ContentEncoder(model, tokenizer, special_token_init=10_000)


@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_other_backbones(tmp_path, arch):
    model, tokenizer, _ = load_causal_lm(make_tiny_llm(str(tmp_path / arch), arch=arch))
    enc = ce.ContentEncoder(model, tokenizer, batch_size=2)
    texts = ["Toy Story", "a much longer title with padding after it", "Babe"]
    emb = enc.encode(texts, show_progress=False)
    assert emb.shape == (3, 32) and torch.isfinite(emb).all()
    assert torch.allclose(emb[2], enc.encode(["Babe"], show_progress=False)[0], atol=1e-5)


# ----------------------------------------------------------------------------- cache

def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value.clone()

    return compute, calls


KEY = {"llm": "hf:tiny:abc", "text_fields": ["movie_title"], "template": None,
       "pooling": "special_token", "max_text_len": 48, "items": ["[PAD]", "1", "2"]}


def test_cache_hit_on_second_call(tmp_path, caplog):
    value = torch.randn(3, 8)
    compute, calls = _counting(value)
    emb, hit = cache.cached_item_embeddings(str(tmp_path / "c"), KEY, compute)
    assert not hit and calls == [1] and torch.equal(emb, value)
    with caplog.at_level(logging.INFO, logger=cache.__name__):
        emb2, hit2 = cache.cached_item_embeddings(str(tmp_path / "c"), dict(KEY), compute)
    assert hit2 and calls == [1] and torch.equal(emb2, value)
    assert "cache hit" in caplog.text
    files = os.listdir(tmp_path / "c")
    assert files == [f"item_emb-{cache.embedding_cache_key(KEY)[:16]}.pt"]  # no temp files left


def test_truncated_cache_is_rebuilt_with_warning(tmp_path, caplog):
    value = torch.randn(3, 8)
    compute, calls = _counting(value)
    cache.cached_item_embeddings(str(tmp_path / "c"), KEY, compute)
    path = cache.cache_file_path(str(tmp_path / "c"), cache.embedding_cache_key(KEY))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        emb, hit = cache.cached_item_embeddings(str(tmp_path / "c"), KEY, compute)
    assert not hit and calls == [1, 1] and torch.equal(emb, value)
    assert "unusable" in caplog.text
    assert cache.cached_item_embeddings(str(tmp_path / "c"), KEY, compute)[1]  # rebuilt file is valid


def test_tampered_and_foreign_files_are_rebuilt(tmp_path, caplog):
    value = torch.randn(3, 8)
    compute, calls = _counting(value)
    key = cache.embedding_cache_key(KEY)
    path = cache.cache_file_path(str(tmp_path / "c"), key)
    os.makedirs(os.path.dirname(path))
    torch.save({"key": key, "embeddings": value + 1, "n": 3, "checksum": "bad"}, path)
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        assert not cache.cached_item_embeddings(str(tmp_path / "c"), KEY, compute)[1]
    assert "checksum" in caplog.text and calls == [1]
    # same file name, another key (a 16-hex-digit prefix collision): never served
    foreign = {"key": "x" * 64, "embeddings": value, "n": 3, "checksum": cache._checksum(value)}
    torch.save(foreign, path)
    assert not cache.cached_item_embeddings(str(tmp_path / "c"), KEY, compute)[1] and calls == [1, 1]
    # a valid file with the wrong number of items for the caller
    assert not cache.cached_item_embeddings(str(tmp_path / "c"), KEY, compute, expected_n=4)[1]


def test_key_change_recomputes(tmp_path):
    compute, calls = _counting(torch.randn(3, 8))
    cache.cached_item_embeddings(str(tmp_path / "c"), KEY, compute)
    other = dict(KEY, text_fields=["movie_title", "class"])
    _, hit = cache.cached_item_embeddings(str(tmp_path / "c"), other, compute)
    assert not hit and calls == [1, 1] and len(os.listdir(tmp_path / "c")) == 2
    assert cache.cached_item_embeddings(str(tmp_path / "c"), KEY, compute)[1]  # first still valid


def test_encoder_through_cache(tmp_path, encoder):
    texts = ["Toy Story", "GoldenEye"]
    cache_dir = str(tmp_path / "c")
    emb, hit = cache.cached_item_embeddings(cache_dir, KEY, lambda: encoder.encode(texts, False))
    emb2, hit2 = cache.cached_item_embeddings(cache_dir, KEY, lambda: pytest.fail("recomputed"))
    assert (hit, hit2) == (False, True) and torch.equal(emb, emb2)


# ----------------------------------------------------------------------------- centring

def _anisotropic(n=64, d=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen) * 0.3 + 5.0 * torch.ones(d)  # one dominant direction


def test_variance_shares_see_one_dominant_direction_and_whitening_flattens_it():
    gen = torch.Generator().manual_seed(0)
    spread = torch.randn(200, 16, generator=gen) * 0.1
    spread[:, 0] *= 30.0  # one direction carries almost all the variance
    shares = centring.variance_shares(spread, tops=(1, 4))
    assert shares["variance_share_top1"] > 0.9 and shares["variance_share_top4"] <= 1.0
    white, _, _ = centring.whiten(spread)
    assert centring.variance_shares(white, tops=(1,))["variance_share_top1"] < 0.1  # ~1/16 each


def test_principal_variances_in_chunks_are_the_squared_singular_values():
    emb = _anisotropic(n=100, d=12)
    expected = torch.linalg.svdvals((emb - emb.mean(0)).double()) ** 2  # [12]
    got = centring.principal_variances(emb, chunk_rows=7)  # fp32 chunks, fp64 sum
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * float(expected.max()))


def test_variance_shares_of_many_rows_are_estimated_on_evenly_spaced_rows():
    emb = _anisotropic(n=1000, d=8)
    assert centring.variance_shares(emb, max_rows=100) == centring.variance_shares(emb[::10])
    assert centring.variance_shares(emb, max_rows=1000) == centring.variance_shares(emb[::1])


def test_postprocess_centres_in_place_and_zeroes_the_padding_row():
    from recbole_hymirec.model.item_codes import postprocess
    raw = _anisotropic(n=10, d=4)
    expected_mean = raw[1:].mean(0)
    centred, mean = postprocess(raw)
    assert centred.data_ptr() == raw.data_ptr()  # no second table
    assert torch.allclose(mean, expected_mean)
    assert torch.equal(centred[0], torch.zeros(4))
    assert torch.allclose(centred[1:].mean(0), torch.zeros(4), atol=1e-5)


def test_centring_removes_the_common_direction():
    emb = _anisotropic()
    assert centring.mean_pairwise_cosine(emb) > 0.9
    centred, mean = centring.center_embeddings(emb)
    assert torch.allclose(centred.mean(0), torch.zeros(16), atol=1e-5)
    assert abs(centring.mean_pairwise_cosine(centred)) < 0.05
    again, same_mean = centring.center_embeddings(emb[:5], mean=mean)  # reuse a stored mean
    assert same_mean is mean and torch.allclose(again, centred[:5])


def test_whiten_gives_identity_covariance():
    white, mean, transform = centring.whiten(_anisotropic(n=200), eps=1e-9)
    cov = white.T @ white / (white.shape[0] - 1)
    assert torch.allclose(cov, torch.eye(16), atol=1e-3)
    reduced, _, transform4 = centring.whiten(_anisotropic(n=200), dim=4)
    assert reduced.shape == (200, 4) and transform4.shape == (16, 4)
