"""Lightweight recommender: M coarse interests from the long history, padding-independent."""
import pytest
import torch

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.lightweight import LightweightInterestExtractor, recency_positions

DIM, HIDDEN, QUERIES = 12, 16, 3


def make_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    args = dict(hidden_size=HIDDEN, n_layers=2, n_heads=2, n_queries=QUERIES, max_len=20, dropout=0.1)
    args.update(kwargs)
    return LightweightInterestExtractor(DIM, **args).eval()


def left_aligned_mask(lengths, max_len):
    return torch.arange(max_len).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # [B, L]


def test_output_shape_and_train_mode_runs():
    model = make_model().train()
    history = torch.randn(4, 7, DIM)
    mask = left_aligned_mask([7, 3, 1, 0], 7)
    out = model(history, mask)
    assert out.shape == (4, QUERIES, HIDDEN)
    out.sum().backward()
    assert model.queries.grad is not None and torch.isfinite(model.queries.grad).all()


def test_recency_positions_count_from_the_most_recent_real_item():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 1, 0, 1]]).bool()
    assert recency_positions(mask).tolist() == [
        [2, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 2, 1, 0, 0]]


def test_padded_positions_do_not_change_the_output():
    model = make_model()
    history = torch.randn(3, 8, DIM)
    mask = left_aligned_mask([5, 2, 8], 8)
    noisy = history.clone()
    noisy[~mask] = torch.randn(int((~mask).sum()), DIM) * 100
    noisy[0, 6, 0] = float("nan")  # even garbage in the padding must not leak
    with torch.no_grad():
        assert torch.allclose(model(history, mask), model(noisy, mask), atol=1e-5)


def test_amount_of_padding_does_not_change_the_output():
    # positions are counted from the most recent real item, so extra padding changes nothing
    model = make_model()
    real = torch.randn(1, 4, DIM)
    short = real
    long = torch.cat([real, torch.randn(1, 6, DIM)], dim=1)
    with torch.no_grad():
        out_short = model(short, torch.ones(1, 4, dtype=torch.bool))
        out_long = model(long, left_aligned_mask([4], 10))
    assert torch.allclose(out_short, out_long, atol=1e-5)


def test_empty_history_row_is_finite_and_equals_the_queries_alone():
    model = make_model()
    history = torch.randn(2, 6, DIM)
    mask = left_aligned_mask([0, 4], 6)
    with torch.no_grad():
        out = model(history, mask)
        alone = model(torch.randn(1, 3, DIM), torch.zeros(1, 3, dtype=torch.bool))
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0], alone[0], atol=1e-5)


def test_output_depends_on_real_history_and_its_order():
    model = make_model()
    history = torch.randn(1, 5, DIM)
    mask = left_aligned_mask([4], 5)
    changed = history.clone()
    changed[0, 1] += 1.0
    reordered = history.clone()
    reordered[0, :4] = history[0, [3, 2, 1, 0]]
    with torch.no_grad():
        base = model(history, mask)
        assert not torch.allclose(base, model(changed, mask), atol=1e-4)
        assert not torch.allclose(base, model(reordered, mask), atol=1e-4)


def test_queries_give_distinct_interests():
    model = make_model()
    with torch.no_grad():
        out = model(torch.randn(2, 5, DIM), left_aligned_mask([5, 3], 5))
    assert not torch.allclose(out[:, 0], out[:, 1], atol=1e-3)


@pytest.mark.parametrize("kwargs, words", [
    (dict(hidden_size=10, n_heads=3), "divisible"),
    (dict(n_queries=0), "n_coarse_interests"),
    (dict(n_layers=0), "n_layers"),
    (dict(dropout=1.0), "dropout"),
    (dict(max_len=0), "max_len"),
])
def test_invalid_arguments_raise_config_error(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        make_model(**kwargs)


def test_wrong_input_size_or_too_long_history_is_a_config_error():
    model = make_model(max_len=4)
    with pytest.raises(ConfigError, match="input_dim"):
        model(torch.randn(1, 3, DIM + 1), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="max_len"):
        model(torch.randn(1, 5, DIM), torch.ones(1, 5, dtype=torch.bool))


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_output_equals_the_standard_encoder_at_the_query_positions(n_layers):
    # the forward computes only the query states of the last layer, with fused attention:
    # the same numbers as nn.TransformerEncoder over history + queries
    model = make_model(n_layers=n_layers)
    history = torch.randn(3, 9, DIM)
    mask = left_aligned_mask([9, 4, 0], 9)
    with torch.no_grad():
        tokens = torch.cat([model.embed_history(history, mask),
                            model.queries.expand(3, -1, -1)], dim=1)  # [B, L + M, h]
        ignore = torch.cat([~mask, torch.zeros(3, QUERIES, dtype=torch.bool)], dim=1)
        reference = model.encoder(tokens, src_key_padding_mask=ignore)[:, -QUERIES:]
        assert torch.allclose(model(history, mask), reference, atol=1e-5)
