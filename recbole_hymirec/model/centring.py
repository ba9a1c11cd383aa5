"""Centring and whitening of content embeddings. Raw causal-LM states are anisotropic
(cosine ≈ 0.95 between unrelated titles): they are centred before any cosine use."""
import torch
from torch import nn


def center_embeddings(emb, mean=None):
    """``(emb - mean, mean)``; ``mean`` defaults to the mean row of ``emb`` ``[D]``.

    Causal-LM states share a large common direction; removing it is what makes cosine similarity
    between items informative. Compute the mean on real items (not the ``[PAD]`` row).
    """
    if mean is None:
        mean = emb.float().mean(dim=0)  # [D]
    return emb - mean.to(emb.dtype), mean


def whiten(emb, eps=1e-5, dim=None):
    """PCA whitening: centred rows rotated onto the principal axes and scaled to unit variance.

    Returns ``(white [n, dim or D], mean [D], transform [D, dim or D])``; apply to new rows with
    ``(x - mean) @ transform``. ``dim`` keeps only the top principal directions.
    """
    x = emb.double()
    centred, mean = center_embeddings(x)
    cov = centred.T @ centred / max(x.shape[0] - 1, 1)  # [D, D]
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)
    if dim is not None:
        eigvals, eigvecs = eigvals[:dim], eigvecs[:, :dim]
    transform = eigvecs / torch.sqrt(eigvals.clamp_min(0) + eps)  # [D, k]
    white = centred @ transform  # [n, k]
    return white.to(emb.dtype), mean.to(emb.dtype), transform.to(emb.dtype)


def variance_shares(emb, tops=(1, 10), max_rows=65536):
    """Share of the variance of ``emb`` ``[n, D]`` held by its top principal directions, e.g.
    ``{"variance_share_top1": 0.35, "variance_share_top10": 0.78}`` (an anisotropy diagnostic:
    near 1 = items differ along few directions). Above ``max_rows`` rows it is estimated on
    evenly spaced rows: the covariance of a million rows of width 2048 costs minutes."""
    step = -(-emb.shape[0] // max_rows)  # ceil: at most max_rows rows
    power = principal_variances(emb[::step])  # [D] descending
    total = power.sum().clamp_min(1e-12)
    return {f"variance_share_top{k}": round(float(power[:k].sum() / total), 4) for k in tops}


def principal_variances(emb, chunk_rows=16384):
    """Variance along each principal direction of ``emb`` ``[n, D]``, descending ``[D]`` (times
    ``n``: the squared singular values of the centred rows). The covariance is summed chunk by
    chunk (each chunk's product in float32, their sum in float64), so no centred or float64 copy
    of ``emb`` is made."""
    mean = _chunked_mean(emb, chunk_rows)  # [D]
    scatter = emb.new_zeros(emb.shape[1], emb.shape[1], dtype=torch.float64)  # [D, D]
    for start in range(0, emb.shape[0], chunk_rows):
        centred = emb[start:start + chunk_rows].float() - mean.float()  # [b, D]
        scatter += (centred.T @ centred).double()  # a chunk in fp32, the sum over chunks in fp64
    return torch.linalg.eigvalsh(scatter).flip(0).clamp_min(0)  # [D]


def _chunked_mean(emb, chunk_rows):
    """Mean row of ``emb`` ``[n, D]`` in float64 ``[D]``, chunk by chunk."""
    total = sum(emb[start:start + chunk_rows].double().sum(dim=0)
                for start in range(0, emb.shape[0], chunk_rows))  # [D]
    return total / emb.shape[0]


def mean_pairwise_cosine(emb):
    """Mean cosine over distinct pairs of rows (an anisotropy diagnostic)."""
    unit = nn.functional.normalize(emb.float(), dim=-1)  # [n, D]
    sims = unit @ unit.T  # [n, n]
    n = sims.shape[0]
    return float((sims.sum() - sims.diagonal().sum()) / max(n * (n - 1), 1))
