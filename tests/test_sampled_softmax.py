"""Sampled softmax with log-Q correction, the item rows a sampled step computes, and the
chunked full ranking: against the full softmax and the unchunked scores."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_hymirec_settings
from recbole_hymirec.config import Config
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.dmil import DMILLoss
from recbole_hymirec.model.retrieval import max_over_interests, max_over_interests_in_chunks
from recbole_hymirec.model.sampled_softmax import LogQNegativeSampler, rows_of_items
from recbole_hymirec.utils import create_dataset, data_preparation, get_model


def _case(batch=3, n_interests=2, n_items=12, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    interests = torch.randn(batch, n_interests, dim, generator=generator)
    items = torch.randn(n_items, dim, generator=generator)
    targets = torch.randint(1, n_items, (batch, 2), generator=generator)
    targets[0, 1] = 0  # a padding slot
    return interests, items, targets


def test_every_item_sampled_with_uniform_q_is_the_full_softmax():
    interests, items, targets = _case()
    sampler = LogQNegativeSampler(torch.arange(12.0), n_negatives=11, alpha=0.0)
    every_item = torch.arange(1, 12).expand(3, -1)  # [B, n - 1], the positive among them
    loss = DMILLoss()
    full = loss(interests, targets, items)
    sampled = loss(interests, targets, items, every_item, sampler.logit_offset())
    assert sampled.item() == pytest.approx(full.item(), rel=1e-5)
    uncorrected = loss(interests, targets, items, every_item)  # the same here: q is uniform
    assert uncorrected.item() == pytest.approx(full.item(), rel=1e-5)


def test_the_log_q_term_is_subtracted_from_every_sampled_logit():
    counts = torch.tensor([0.0, 9.0, 0.0, 3.0, 1.0])  # q ~ count + 1: 10, 1, 4, 2 of 17
    sampler = LogQNegativeSampler(counts, n_negatives=3, alpha=1.0)
    q = torch.tensor([10.0, 1.0, 4.0, 2.0]) / 17.0
    assert torch.allclose(sampler.log_q[1:], q.log())
    assert sampler.log_q[0] == 0  # padding: masked, never an infinite offset
    interest = torch.randn(1, 1, 4, generator=torch.Generator().manual_seed(1))
    items = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    negatives = torch.tensor([[1, 3, 4, 2]])  # item 2 is the positive: masked among them
    loss = DMILLoss(temperature_init=0.5)
    got = loss(interest, torch.tensor([[2]]), items, negatives, sampler.logit_offset())
    cosine = F.cosine_similarity(interest[0], items, dim=1)  # [5]
    candidates = torch.tensor([2, 1, 3, 4])  # the positive first, then the other negatives
    logits = 2.0 * cosine[candidates] - sampler.log_q[candidates]
    assert got.item() == pytest.approx(-torch.log_softmax(logits, 0)[0].item(), rel=1e-5)
    without = loss(interest, torch.tensor([[2]]), items, negatives)
    assert abs(without.item() - got.item()) > 1e-3  # the correction changes the loss


def test_item_bias_and_log_q_add_up():
    sampler = LogQNegativeSampler(torch.tensor([0.0, 1.0, 3.0]), n_negatives=2)
    bias = torch.tensor([0.0, 0.5, -0.5])
    assert torch.allclose(sampler.logit_offset(bias), bias - sampler.log_q)


def test_negatives_follow_the_popularity_and_never_the_padding_item():
    counts = torch.tensor([100.0, 0.0, 1.0, 7.0])  # weights 1, 2, 8 (padding's count ignored)
    sampler = LogQNegativeSampler(counts, n_negatives=22000)
    torch.manual_seed(0)
    negatives = sampler.sample(batch_size=3)
    assert negatives.shape == (3, 22000) and torch.equal(negatives[0], negatives[2])
    frequencies = torch.bincount(negatives[0], minlength=4).float() / 22000
    assert frequencies[0] == 0
    assert torch.allclose(frequencies[1:], torch.tensor([1.0, 2.0, 8.0]) / 11, atol=0.01)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_negatives": 0}, r"sampled_negatives=0 must be an integer >= 1"),
    ({"n_negatives": 2.5}, r"sampled_negatives=2.5 must be an integer >= 1"),
    ({"n_negatives": 4, "alpha": -1.0}, r"negative_sampling_alpha=-1.0 must be a number >= 0"),
])
def test_bad_sampler_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LogQNegativeSampler(torch.ones(5), **kwargs)


def test_rows_of_items_computes_each_read_row_once_and_zeroes_the_rest():
    table = torch.randn(9, 3, requires_grad=True)
    computed = []

    def item_rows(ids):
        computed.append(ids.clone())
        return table[ids] * 2.0

    ids = torch.tensor([[4, 7, 4], [2, 0, 7]])
    rows = rows_of_items(item_rows, ids, 9)
    assert rows.shape == (9, 3)
    for item in (0, 2, 4, 7):
        assert torch.equal(rows[item], table[item].detach() * 2.0)
    assert torch.equal(rows[[1, 3, 5, 6, 8]], torch.zeros(5, 3))
    assert sorted(computed[0].tolist()) == [0, 0, 0, 2, 4, 7]  # repeats went to padding row 0
    rows[[2, 4, 7]].sum().backward()
    expected = torch.zeros(9, 3)
    expected[[2, 4, 7]] = 2.0  # each read row's gradient once, not once per repeat
    assert torch.equal(table.grad, expected)


@pytest.mark.parametrize("normalize", [True, False])
def test_chunked_ranking_equals_the_unchunked_scores(normalize):
    generator = torch.Generator().manual_seed(3)
    interests = torch.randn(64, 4, 16, generator=generator)
    items = torch.randn(5000, 16, generator=generator)
    whole = max_over_interests(interests, items, normalize)

    def item_rows(chunk):
        return items[chunk]

    for chunk_items in (256, 1000, 4097, 5000, 0):  # tails of 136, 0 and 903 items
        chunked = max_over_interests_in_chunks(interests, item_rows, 5000, chunk_items, normalize)
        assert torch.equal(chunked, whole), chunk_items
    # a chunk of a few items may take another BLAS kernel: the same scores to float rounding
    tiny_chunks = max_over_interests_in_chunks(interests, item_rows, 5000, 7, normalize)
    assert torch.allclose(tiny_chunks, whole, rtol=0, atol=1e-6 * float(whole.abs().max()))


def _hymirec(assets, **overrides):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(data_path, llm_path,
                                                                        **overrides))
    train, _, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return get_model("HyMiRec")(config, train._dataset), train, test


def test_hymirec_trains_on_sampled_negatives_and_ranks_in_chunks(assets):
    model, train, test = _hymirec(assets, sampled_negatives=16, ranking_chunk_items=7,
                                  item_bias=True)
    assert model.negative_sampler.n_negatives == 16
    batch = next(iter(train))
    model.train()
    losses = model.calculate_loss(batch)
    loss = sum(losses) if isinstance(losses, tuple) else losses
    assert math.isfinite(loss.item())
    loss.backward()
    assert model.item_tower.weight.grad.abs().sum() > 0
    assert model.item_bias.grad.abs().sum() > 0
    model.eval()
    eval_batch = next(iter(test))[0]
    with torch.no_grad():
        chunked = model.full_sort_predict(eval_batch)
        model.ranking_chunk_items = 0
        whole = model.full_sort_predict(eval_batch)
    assert chunked.shape == (len(eval_batch), model.n_items)
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-6 * float(whole.abs().max()))  # rounding
    assert not torch.equal(chunked[:, 1:], torch.zeros_like(chunked[:, 1:]))


def test_sampled_negatives_with_bpr_is_a_clear_error(assets):
    with pytest.raises(ConfigError, match=r"sampled_negatives=8 replaces the full softmax of "
                                          r"loss_type CE, but loss_type=BPR"):
        _hymirec(assets, sampled_negatives=8, loss_type="BPR",
                 train_neg_sample_args={"distribution": "uniform", "sample_num": 1})
