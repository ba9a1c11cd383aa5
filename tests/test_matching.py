"""DMIL's Hungarian step: enumerated on the device for K <= 6, scipy's solver above."""
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from recbole_hymirec.model import dmil
from recbole_hymirec.model.dmil import (match_by_enumeration, match_clusters_to_interests,
                                        match_with_scipy)


def _total(cosine, matching, k_per_row):
    """Total cosine of each row's matching ``[B]``."""
    return [sum(float(cosine[b, c, matching[b, c]]) for c in range(k)) for b, k in
            enumerate(k_per_row.tolist())]


def _scipy_total(cosine, k_per_row):
    totals = []
    for b, k in enumerate(k_per_row.tolist()):
        clusters, interests = linear_sum_assignment(cosine[b, :k].numpy(), maximize=True)
        totals.append(float(cosine[b, clusters, interests].sum()))
    return totals


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_enumeration_reaches_scipys_optimum_with_distinct_interests(k):
    g = torch.Generator().manual_seed(k)
    cosine = torch.rand(200, k, k, generator=g) * 2 - 1  # [B, K, K]
    k_per_row = torch.randint(0, k + 1, (200,), generator=g)  # [B]
    matching = match_by_enumeration(cosine, k_per_row)  # [B, K]
    assert matching.shape == (200, k) and matching.dtype == torch.long
    assert _total(cosine, matching, k_per_row) == pytest.approx(_scipy_total(cosine, k_per_row),
                                                                abs=1e-5)
    for b, used in enumerate(k_per_row.tolist()):
        assert len(set(matching[b, :used].tolist())) == used  # one interest per cluster
        assert (matching[b, used:] == -1).all()


def test_one_cluster_takes_the_first_closest_interest():
    cosine = torch.tensor([[[0.2, 0.9, 0.9, -0.1]]])  # a tie between interests 1 and 2
    assert match_by_enumeration(cosine, torch.tensor([1])).tolist() == [[1]]


def test_more_interests_than_enumeration_affords_go_to_scipy(monkeypatch):
    k = dmil.MAX_ENUMERATED_INTERESTS + 1
    g = torch.Generator().manual_seed(0)
    centres, interests = torch.randn(30, k, 8, generator=g), torch.randn(30, k, 8, generator=g)
    k_per_row = torch.randint(0, k + 1, (30,), generator=g)

    def refused(*_):
        raise AssertionError("enumerated 7! matchings")

    monkeypatch.setattr(dmil, "match_by_enumeration", refused)
    matching = match_clusters_to_interests(centres, k_per_row, interests)
    cosine = torch.einsum("bkd,bjd->bkj", torch.nn.functional.normalize(centres, dim=-1),
                          torch.nn.functional.normalize(interests, dim=-1))
    assert torch.equal(matching, match_with_scipy(cosine, k_per_row))
    assert _total(cosine, matching, k_per_row) == pytest.approx(_scipy_total(cosine, k_per_row),
                                                                abs=1e-5)


def test_more_clusters_than_interests_is_refused():
    centres, interests = torch.randn(2, 3, 4), torch.randn(2, 2, 4)
    with pytest.raises(ValueError, match="cannot match 3 clusters to only 2 interests"):
        match_clusters_to_interests(centres, torch.tensor([1, 3]), interests)
    matched = match_clusters_to_interests(centres, torch.tensor([1, 2]), interests)
    assert matched[:, 2].tolist() == [-1, -1] and np.all(matched[1, :2].numpy() >= 0)
