"""Cosine residual codebook: assignment, residual, balance, determinism, codes, reports."""
import math

import pytest
import torch
import torch.nn.functional as F

from recbole_hymirec.model.codebook import CosineResidualCodebook, code_dtype, remove_projection
from recbole_hymirec.model.kmeans import balanced_assign, balanced_cosine_kmeans, cosine_assign


def clustered_embeddings(n=500, dim=32, n_centres=8, noise=0.5, seed=0):
    """Rows scattered around a few random centres: structure a codebook can pick up."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_centres, dim, generator=generator)
    members = torch.randint(n_centres, (n,), generator=generator)
    return centres[members] + noise * torch.randn(n, dim, generator=generator)


def blob_embeddings(n_blob=400, n_spread=100, dim=16, seed=0):
    """Most rows almost on one direction, the rest anywhere: plain k-means gives the blob
    one huge cluster."""
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(dim, generator=generator)
    blob = direction + 1e-3 * torch.randn(n_blob, dim, generator=generator)
    spread = torch.randn(n_spread, dim, generator=generator)
    return torch.cat([blob, spread])


# ---------------------------------------------------------------- hand-computed example

# Layer 0: c0 is the nearest point and c2 has the largest dot product with e = (1, 0.8),
# but c1 = (3, 3) points closest to e's direction.
HAND_CENTROIDS = torch.tensor(
    [
        [[1.5, 0.0], [3.0, 3.0], [10.0, -2.0]],
        [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]],
    ]
)
HAND_ITEM = torch.tensor([[1.0, 0.8]])


def test_assignment_is_argmax_cosine_not_distance_or_dot_product():
    layer0 = HAND_CENTROIDS[0]
    assert int(torch.cdist(HAND_ITEM, layer0).argmin()) == 0
    assert int((HAND_ITEM @ layer0.T).argmax()) == 2
    assert cosine_assign(HAND_ITEM, layer0).tolist() == [1]


def test_projection_residual_matches_hand_computation():
    # e - (e.c / |c|^2) c = (1, 0.8) - (5.4 / 18) (3, 3) = (0.1, -0.1)
    residual, coefficient = remove_projection(HAND_ITEM, HAND_CENTROIDS[0][[1]])
    assert torch.allclose(coefficient, torch.tensor([0.3]))
    assert torch.allclose(residual, torch.tensor([[0.1, -0.1]]))
    # layer 1: (0.1, -0.1) is closest in angle to (1, 0); removing 0.1 * (1, 0) leaves (0, -0.1)
    codebook = CosineResidualCodebook.from_centroids(HAND_CENTROIDS)
    codes, last_residual = codebook.encode(HAND_ITEM, return_residual=True)
    assert codes.tolist() == [[1, 0]]
    assert torch.allclose(last_residual, torch.tensor([[0.0, -0.1]]), atol=1e-6)


def test_decode_sums_scaled_centroids():
    scales = torch.tensor([[1.0, 0.3, 1.0], [0.1, 1.0, 1.0]])
    codebook = CosineResidualCodebook.from_centroids(HAND_CENTROIDS, scales)
    # 0.3 * (3, 3) + 0.1 * (1, 0) = e - last residual = (1, 0.9)
    assert torch.allclose(codebook.decode(torch.tensor([[1, 0]])), torch.tensor([[1.0, 0.9]]))
    assert torch.allclose(codebook.decode(torch.tensor([[1, 0]]), n_layers=1), torch.tensor([[0.9, 0.9]]))


def test_zero_centroid_removes_nothing():
    residual, coefficient = remove_projection(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2))
    assert torch.equal(residual, torch.tensor([[1.0, 2.0]]))
    assert torch.equal(coefficient, torch.zeros(1))


# ---------------------------------------------------------------- fit quality and balance

def test_reconstruction_improves_with_every_layer():
    embeddings = clustered_embeddings()
    codebook = CosineResidualCodebook(n_layers=3, codebook_size=16, max_cluster_share=0.25, seed=1)
    codebook.fit(embeddings)
    for per_layer in (codebook.recon_cos_per_layer(embeddings, codebook.codes),
                      codebook.recon_cos_per_layer(embeddings)):
        assert len(per_layer) == 3
        assert per_layer[0] < per_layer[1] < per_layer[2], per_layer
    assert codebook.recon_cos_per_layer(embeddings)[0] > 0.8  # the 8 centres are found


def test_one_item_per_codeword_reconstructs_exactly():
    embeddings = clustered_embeddings(n=8, dim=6, n_centres=8)
    codebook = CosineResidualCodebook(n_layers=1, codebook_size=8, max_cluster_share=1 / 8).fit(embeddings)
    assert sorted(codebook.codes[:, 0].tolist()) == list(range(8))
    assert torch.allclose(codebook.scales, torch.ones(1, 8), atol=1e-5)
    assert torch.allclose(codebook.decode(codebook.codes), embeddings, atol=1e-5)


def test_balanced_assign_gives_overflow_to_next_best_cluster():
    # every item prefers cluster 0, which has room for 2: it keeps its two most similar items
    similarity = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.6], [0.95, 0.0]])
    assert balanced_assign(similarity, capacity=2).tolist() == [0, 1, 1, 0]


def test_balanced_assign_reroutes_through_several_full_clusters():
    generator = torch.Generator().manual_seed(0)
    similarity = torch.rand(300, 7, generator=generator)
    similarity[:, 0] += 1.0  # everyone's favourite
    codes = balanced_assign(similarity, capacity=43)  # 43 * 7 = 301 >= 300
    assert int(torch.bincount(codes, minlength=7).max()) <= 43
    assert bool((codes >= 0).all())


def test_balance_cap_holds_in_the_fit_assignment():
    embeddings = blob_embeddings()
    n_items, share = embeddings.shape[0], 0.25
    capacity = math.ceil(share * n_items)
    generator = torch.Generator().manual_seed(0)
    _, uncapped = balanced_cosine_kmeans(embeddings, 8, n_items, 20, generator)
    assert int(torch.bincount(uncapped).max()) > capacity  # the cap has work to do
    _, capped = balanced_cosine_kmeans(embeddings, 8, capacity, 20, generator)
    assert int(torch.bincount(capped).max()) <= capacity


def test_the_codes_a_run_uses_are_the_codes_the_scales_were_fitted_on():
    """The pool's stored codes are its ``encode`` codes (argmax, as every item gets at run
    time), and each decode scale is the mean projection coefficient of exactly those items,
    even where the balance cap moved items at fit time."""
    embeddings = blob_embeddings()
    codebook = CosineResidualCodebook(n_layers=3, codebook_size=8, max_cluster_share=0.25).fit(embeddings)
    codes = codebook.encode(embeddings)
    assert torch.equal(codebook.codes, codes)
    residual = embeddings.float()
    for layer in range(3):
        chosen = codebook.centroids[layer][codes[:, layer].long()]  # [n, D]
        coefficient = (residual * chosen).sum(1) / (chosen * chosen).sum(1)  # [n]
        for code in codes[:, layer].long().unique().tolist():
            members = codes[:, layer].long() == code
            assert float(codebook.scales[layer, code]) == pytest.approx(
                float(coefficient[members].mean()), rel=1e-4, abs=1e-6)
        residual = residual - coefficient.unsqueeze(1) * chosen


def test_encode_reproduces_fit_codes_without_cap_and_handles_new_items(monkeypatch):
    # encode works in row chunks, fit on the whole similarity matrix: same codes all the same
    monkeypatch.setattr("recbole_hymirec.model.kmeans.SIMILARITY_CHUNK_ROWS", 64)
    pool = clustered_embeddings(n=400, dim=24, seed=3)
    codebook = CosineResidualCodebook(n_layers=3, codebook_size=16, max_cluster_share=1.0).fit(pool)
    assert torch.equal(codebook.encode(pool), codebook.codes)
    new_items = clustered_embeddings(n=50, dim=24, seed=4)
    codes = codebook.encode(new_items)
    assert codes.shape == (50, 3) and codes.dtype == torch.uint8
    assert codebook.decode(codes).shape == (50, 24)


def test_chunked_encoding_equals_one_chunk_exactly(monkeypatch):
    pool = clustered_embeddings(n=300, dim=20, seed=5)
    codebook = CosineResidualCodebook(n_layers=3, codebook_size=8, max_cluster_share=1.0).fit(pool)
    whole_codes, whole_residual = codebook.encode(pool, return_residual=True)
    whole_cosines = codebook.recon_cosines(pool, whole_codes)
    monkeypatch.setattr("recbole_hymirec.model.codebook.ENCODE_CHUNK_ROWS", 7)  # 43 chunks, a short last one
    chunked_codes, chunked_residual = codebook.encode(pool, return_residual=True)
    assert torch.equal(chunked_codes, whole_codes)
    assert torch.equal(chunked_residual, whole_residual)
    assert torch.equal(codebook.recon_cosines(pool, chunked_codes), whole_cosines)
    for layer in range(3):  # one pass gives the cosine of every partial decode
        partial = F.cosine_similarity(pool, codebook.decode(whole_codes, n_layers=layer + 1), dim=1)
        assert torch.allclose(whole_cosines[:, layer], partial, atol=1e-6)
    refit = CosineResidualCodebook(n_layers=3, codebook_size=8, max_cluster_share=1.0).fit(pool)
    assert torch.equal(refit.codes, codebook.codes) and torch.equal(refit.scales, codebook.scales)


def test_fit_on_a_sample_reconstructs_almost_as_well_as_the_full_fit():
    pool = clustered_embeddings(n=2000, dim=24, n_centres=40, noise=0.6, seed=6)
    full = CosineResidualCodebook(n_layers=2, codebook_size=16, seed=1).fit(pool)
    sampled = CosineResidualCodebook(n_layers=2, codebook_size=16, seed=1, fit_sample=400).fit(pool)
    assert not torch.equal(sampled.centroids, full.centroids)  # the sample did change the fit
    assert sampled.codes.shape == (2000, 2)  # every pool item is coded, not only the sample
    assert torch.equal(sampled.codes, sampled.encode(pool))
    full_cos = full.stats(pool, full.codes)["recon_cos_mean"]
    sampled_cos = sampled.stats(pool, sampled.codes)["recon_cos_mean"]
    assert sampled_cos == pytest.approx(full_cos, abs=0.02)


def test_a_sample_as_large_as_the_pool_fits_exactly_as_without_one():
    pool = clustered_embeddings(n=300, dim=16)
    plain = CosineResidualCodebook(n_layers=2, codebook_size=8, seed=3).fit(pool)
    same = CosineResidualCodebook(n_layers=2, codebook_size=8, seed=3, fit_sample=300).fit(pool)
    assert torch.equal(plain.centroids, same.centroids) and torch.equal(plain.codes, same.codes)


def test_stats_report_cluster_balance():
    codebook = CosineResidualCodebook.from_centroids(torch.randn(1, 4, 6))
    codes = torch.tensor([[0], [0], [1], [2], [3], [3]], dtype=torch.uint8)
    stats = codebook.stats(torch.randn(6, 6), codes)
    assert stats["max_cluster_share"] == [2 / 6] and stats["min_cluster_share"] == [1 / 6]
    shares = torch.tensor([2, 1, 1, 2], dtype=torch.float64) / 6
    assert stats["codeword_entropy"][0] == pytest.approx(float(-(shares * shares.log()).sum() / math.log(4)))
    even = codebook.stats(torch.randn(4, 6), torch.arange(4, dtype=torch.uint8).unsqueeze(1))
    assert even["codeword_entropy"] == [pytest.approx(1.0)]


def test_encode_before_fit_is_refused():
    with pytest.raises(RuntimeError, match="not fitted"):
        CosineResidualCodebook(n_layers=1, codebook_size=4).encode(torch.randn(5, 3))


# ---------------------------------------------------------------- determinism and saving

def test_same_seed_same_codebook_other_seed_other_codebook():
    embeddings = clustered_embeddings(n=300, dim=16, n_centres=20, noise=1.0)

    def fit(seed):
        return CosineResidualCodebook(n_layers=2, codebook_size=12, max_cluster_share=0.2, seed=seed).fit(embeddings)

    first, again, other = fit(7), fit(7), fit(8)
    assert torch.equal(first.centroids, again.centroids)
    assert torch.equal(first.scales, again.scales)
    assert torch.equal(first.codes, again.codes)
    assert not torch.equal(first.centroids, other.centroids)


def test_state_dict_round_trip_into_a_fresh_codebook(tmp_path):
    embeddings = clustered_embeddings(n=200, dim=10)
    codebook = CosineResidualCodebook(n_layers=2, codebook_size=8, max_cluster_share=0.3).fit(embeddings)
    torch.save(codebook.state_dict(), tmp_path / "codebook.pt")

    fresh = CosineResidualCodebook(n_layers=2, codebook_size=8, max_cluster_share=0.3)
    assert not fresh.is_fitted
    fresh.load_state_dict(torch.load(tmp_path / "codebook.pt"))
    assert fresh.is_fitted and fresh.embedding_dim == 10
    assert torch.equal(fresh.codes, codebook.codes)
    assert torch.equal(fresh.encode(embeddings), codebook.encode(embeddings))
    assert torch.equal(fresh.decode(fresh.codes), codebook.decode(codebook.codes))

    with pytest.raises(RuntimeError, match="size mismatch"):
        CosineResidualCodebook(n_layers=2, codebook_size=9).load_state_dict(codebook.state_dict())


# ---------------------------------------------------------------- code dtype

@pytest.mark.parametrize(
    "size, dtype",
    [(2, torch.uint8), (256, torch.uint8), (257, torch.int16), (32767, torch.int16), (32768, torch.int32)],
)
def test_code_dtype_is_the_smallest_that_fits(size, dtype):
    assert code_dtype(size) == dtype


def test_uint8_codes_index_like_integers_not_masks():
    embeddings = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    codebook = CosineResidualCodebook(n_layers=1, codebook_size=256, max_cluster_share=1.0, n_iters=2)
    codes = codebook.fit(embeddings).codes
    assert codes.dtype == torch.uint8 and int(codes.max()) > 1
    assert torch.equal(codebook.decode(codes), codebook.decode(codes.long()))

    wide = CosineResidualCodebook(n_layers=1, codebook_size=257, max_cluster_share=1.0, n_iters=2)
    wide_codes = wide.fit(embeddings).codes
    assert wide_codes.dtype == torch.int16 and int(wide_codes.max()) > 255
    assert wide.encode(embeddings).dtype == torch.int16


# ---------------------------------------------------------------- stats

def test_stats_sizes_and_collisions_on_a_handmade_code_table():
    embeddings = clustered_embeddings(n=40, dim=12)
    codebook = CosineResidualCodebook(n_layers=2, codebook_size=4, max_cluster_share=0.5).fit(embeddings)
    codes = torch.tensor([[0, 1], [0, 1], [1, 1], [2, 0], [2, 0], [2, 0], [3, 3]], dtype=torch.uint8)
    stats = codebook.stats(embeddings[:7], codes)
    assert stats["n_items"] == 7 and stats["embedding_dim"] == 12
    assert stats["codebook_layers"] == 2 and stats["codebook_size"] == 4
    assert stats["bytes_per_item_fp32"] == 48 and stats["bytes_per_item_codes"] == 2
    assert stats["compression_ratio"] == 24.0
    assert stats["full_code_collisions"] == 5  # (0,1) x2 and (2,0) x3; (1,1) and (3,3) are unique
    assert stats["unique_codes"] == 4
    assert stats["max_cluster_share"] == [3 / 7, 3 / 7]
    assert stats["codes_used"] == [4, 3]
    assert -1.0 <= stats["recon_cos_min"] <= stats["recon_cos_mean"] <= 1.0
    assert stats["recon_cos_mean"] == pytest.approx(stats["recon_cos_per_layer"][-1])


def test_stats_bytes_with_wide_codes():
    codebook = CosineResidualCodebook.from_centroids(torch.randn(3, 300, 576))
    stats = codebook.stats(torch.randn(5, 576))
    assert stats["bytes_per_item_fp32"] == 2304 and stats["bytes_per_item_codes"] == 6
    assert stats["compression_ratio"] == 384.0
    assert CosineResidualCodebook.count_full_code_collisions(torch.zeros(0, 3)) == 0


# ---------------------------------------------------------------- errors

def test_codebook_larger_than_pool_is_a_clear_error():
    with pytest.raises(ValueError, match=r"codebook_size=10 is larger than the 5 items.*codebook_size <= 5"):
        CosineResidualCodebook(n_layers=1, codebook_size=10).fit(torch.randn(5, 4))


def test_impossible_share_is_a_clear_error():
    # at most 20 items per codeword x 4 codewords = 80 < 100 items
    with pytest.raises(ValueError, match=r"max_cluster_share=0\.2 is impossible.*hold only 80.*at least 1/codebook_size"):
        CosineResidualCodebook(n_layers=1, codebook_size=4, max_cluster_share=0.2).fit(torch.randn(100, 4))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_layers": 0}, "n_layers=0"),
        ({"codebook_size": 0}, "codebook_size=0"),
        ({"max_cluster_share": 0.0}, r"outside \(0, 1\]"),
        ({"max_cluster_share": 1.5}, r"outside \(0, 1\]"),
        ({"fit_sample": 3}, r"codebook_fit_sample=3 is invalid: use an integer >= codebook_size=4"),
        ({"fit_sample": 10.5}, r"codebook_fit_sample=10.5 is invalid"),
    ],
)
def test_invalid_settings_are_refused_at_construction(kwargs, message):
    settings = {"n_layers": 2, "codebook_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        CosineResidualCodebook(**settings)


def test_default_share_leaves_room_for_every_item():
    codebook = CosineResidualCodebook(n_layers=1, codebook_size=16)
    assert codebook.max_cluster_share == pytest.approx(0.25)
    codebook.fit(clustered_embeddings(n=100, dim=8))
    assert int(torch.bincount(codebook.codes[:, 0].long()).max()) <= 25
