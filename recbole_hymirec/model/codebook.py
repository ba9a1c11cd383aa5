# -*- coding: utf-8 -*-
"""Cosine residual codebook: items as L small integer codes (stage 1 of HyMiRec).

At every layer ``l`` the residuals ``e_l`` of a base pool of item embeddings are clustered
with balanced k-means under cosine similarity into ``C`` codewords; each item takes

    b = argmax_x cos(e_l, c_{l,x})                       (assignment)
    e_{l+1} = e_l - ((e_l . c_b) / ||c_b||^2) c_b         (remove the projection on c_b)

so that the next layer clusters what the chosen direction did not explain. Only the ``L``
codes of an item are stored; ``decode`` rebuilds an approximate embedding from them.

Pure torch, no RecBole import. An ``nn.Module`` whose centroids, decode scales and
training codes are buffers, so a model holding it saves and reloads them in ``state_dict``.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.kmeans import (balanced_cosine_kmeans, cluster_capacity, cosine_assign,
                                          sum_per_cluster)

_EPS = 1e-12
# Rows encoded (and reported on) at a time: every temporary is [rows, D], never [n_items, D],
# so a million-item catalogue costs its own table and a few chunks.
ENCODE_CHUNK_ROWS = 16384


def code_dtype(codebook_size):
    """Smallest integer dtype that holds codes ``0 .. codebook_size - 1``."""
    if codebook_size <= 256:
        return torch.uint8
    if codebook_size <= 32767:
        return torch.int16
    return torch.int32


def remove_projection(x, chosen_centroids):
    """Residual ``x - ((x . c) / ||c||^2) c`` and the coefficient ``(x . c) / ||c||^2``.

    Args:
        x: [n, D] current residuals.
        chosen_centroids: [n, D] the centroid each row was assigned to (not normalised).

    Returns:
        (residual [n, D], coefficient [n]); a zero centroid removes nothing (coefficient 0).
    """
    squared_norm = (chosen_centroids * chosen_centroids).sum(dim=1)  # [n]
    coefficient = (x * chosen_centroids).sum(dim=1) / squared_norm.clamp_min(_EPS)  # [n]
    residual = x - coefficient.unsqueeze(1) * chosen_centroids  # [n, D]
    return residual, coefficient


class CosineResidualCodebook(nn.Module):
    r"""L layers x C codewords of cosine residual clustering over item embeddings.

    ``fit`` learns the codewords on a base pool (balanced k-means per layer, no cluster
    larger than ``ceil(max_cluster_share * n)`` items) and keeps the pool's codes in ``codes``;
    ``encode`` maps any embeddings (pool or new items) to codes with plain argmax-cosine, no
    cap, and gives the pool exactly ``codes``; ``decode`` rebuilds embeddings from codes.

    Decode rule (docs/method.md: "the sum over layers of the chosen centroids, each scaled"):

    .. math::  \hat e = \sum_l \alpha_{l,b_l} c_{l,b_l}

    where :math:`\alpha_{l,x}` is the mean projection coefficient
    :math:`(e_l \cdot c_x) / \lVert c_x \rVert^2` of the pool items assigned to codeword
    ``x`` by ``encode`` (1 for a codeword no item took). The per-item coefficients are what
    the projection residual removes, but only codes are stored, so each codeword carries
    its average coefficient instead. Buffer ``scales`` [L, C].

    Codes are ``torch.uint8`` for C <= 256, ``torch.int16`` for C <= 32767, else int32.
    Note that torch reads a uint8 tensor used as an index as a boolean mask: call
    ``.long()`` before indexing with codes.

    Args:
        n_layers (int): L, number of residual layers.
        codebook_size (int): C, codewords per layer.
        max_cluster_share (float or None): largest fraction of the pool one codeword may take
            at fit time, in (0, 1]. None: ``min(1, 4 / C)``, four times the even share.
        n_iters (int): most k-means iterations per layer; a layer stops early once fewer
            than ``KMEANS_TOLERANCE`` (0.1%) of the items change codeword.
        seed (int): seed of the k-means++ initialisation (and of the fit sample); same seed,
            same codebook.
        fit_sample (int or None): the k-means learns the codewords on a seeded random sample
            of at most this many pool items (None: all of them); every pool item is then
            encoded, in chunks, and the decode scales come from all of them.
    """

    def __init__(self, n_layers=3, codebook_size=256, max_cluster_share=None, n_iters=20, seed=2020,
                 fit_sample=None):
        super().__init__()
        if max_cluster_share is None:
            max_cluster_share = min(1.0, 4.0 / codebook_size) if codebook_size >= 1 else 1.0
        self._check_config(n_layers, codebook_size, max_cluster_share, n_iters)
        self._check_fit_sample(fit_sample, codebook_size)
        self.n_layers = int(n_layers)
        self.codebook_size = int(codebook_size)
        self.max_cluster_share = float(max_cluster_share)
        self.n_iters = int(n_iters)
        self.seed = int(seed)
        self.fit_sample = None if fit_sample is None else int(fit_sample)
        # D is only known at fit time; load_state_dict resizes these (see _load_from_state_dict)
        self.register_buffer("centroids", torch.zeros(self.n_layers, self.codebook_size, 0))
        self.register_buffer("scales", torch.ones(self.n_layers, self.codebook_size))
        self.register_buffer("codes", torch.zeros(0, self.n_layers, dtype=self.code_dtype))

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _check_config(n_layers, codebook_size, max_cluster_share, n_iters):
        if int(n_layers) != n_layers or n_layers < 1:
            raise ConfigError(f"codebook n_layers={n_layers} is invalid: use an integer >= 1 (e.g. 3).")
        if int(codebook_size) != codebook_size or codebook_size < 1:
            raise ConfigError(
                f"codebook_size={codebook_size} is invalid: use an integer >= 1 (e.g. 256)."
            )
        if not 0 < max_cluster_share <= 1:
            raise ConfigError(
                f"max_cluster_share={max_cluster_share} is outside (0, 1]: it is the largest "
                f"fraction of items one codeword may take; use e.g. {min(1.0, 4.0 / codebook_size):.4g}."
            )
        if int(n_iters) != n_iters or n_iters < 0:
            raise ConfigError(f"codebook n_iters={n_iters} is invalid: use an integer >= 0 (e.g. 20).")

    @staticmethod
    def _check_fit_sample(fit_sample, codebook_size):
        if fit_sample is None:
            return
        if isinstance(fit_sample, bool) or int(fit_sample) != fit_sample or fit_sample < codebook_size:
            raise ConfigError(
                f"codebook_fit_sample={fit_sample} is invalid: use an integer >= codebook_size="
                f"{codebook_size} (every codeword needs items to fit on), or None to fit on every item."
            )

    @classmethod
    def from_centroids(cls, centroids, scales=None):
        """A codebook with given centroids [L, C, D] (and decode scales [L, C], default 1)."""
        n_layers, codebook_size, _ = centroids.shape
        codebook = cls(n_layers=n_layers, codebook_size=codebook_size, max_cluster_share=1.0)
        codebook.centroids = centroids.detach().float().clone()
        codebook.scales = (
            torch.ones(n_layers, codebook_size) if scales is None else scales.detach().float().clone()
        ).to(codebook.centroids.device)
        return codebook

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Buffers are created before D and the pool size are known: take the saved shapes
        # when they agree with (L, C), so a fresh codebook loads a fitted one.
        expected_leading = {
            "centroids": (self.n_layers, self.codebook_size),
            "scales": (self.n_layers, self.codebook_size),
            "codes": None,
        }
        for name, leading in expected_leading.items():
            saved = state_dict.get(prefix + name)
            if saved is None:
                continue
            fits = saved.shape[1:] == (self.n_layers,) if leading is None else saved.shape[:2] == leading
            if fits:
                current = self._buffers[name]
                self._buffers[name] = torch.empty(saved.shape, dtype=current.dtype, device=current.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self):
        return (
            f"n_layers={self.n_layers}, codebook_size={self.codebook_size}, "
            f"embedding_dim={self.embedding_dim}, max_cluster_share={self.max_cluster_share:.4g}"
        )

    # ------------------------------------------------------------------ properties

    @property
    def code_dtype(self):
        return code_dtype(self.codebook_size)

    @property
    def embedding_dim(self):
        return self.centroids.shape[-1]

    @property
    def is_fitted(self):
        return self.embedding_dim > 0

    # ------------------------------------------------------------------ fit / encode / decode

    def _fitted_count(self, n_pool):
        """Items the k-means fits on: the pool, or ``fit_sample`` of them."""
        return n_pool if self.fit_sample is None else min(n_pool, self.fit_sample)

    def _check_pool(self, embeddings):
        if embeddings.dim() != 2:
            raise ConfigError(
                f"codebook expects item embeddings of shape [n_items, dim], got {tuple(embeddings.shape)}."
            )
        n_items = self._fitted_count(embeddings.shape[0])
        if self.codebook_size > n_items:
            raise ConfigError(
                f"codebook_size={self.codebook_size} is larger than the {n_items} items the codebook "
                f"is fitted on: every codeword needs at least one item. Use codebook_size <= {n_items}, "
                f"or fit on a larger base pool."
            )
        capacity = cluster_capacity(self.max_cluster_share, n_items)
        if capacity * self.codebook_size < n_items:
            raise ConfigError(
                f"max_cluster_share={self.max_cluster_share:.4g} is impossible for {n_items} items and "
                f"codebook_size={self.codebook_size}: each codeword may take at most {capacity} items, "
                f"so {self.codebook_size} codewords hold only {capacity * self.codebook_size}. Raise "
                f"max_cluster_share to at least 1/codebook_size = {1.0 / self.codebook_size:.4g}, "
                f"or use a larger codebook_size."
            )
        if not all_finite(embeddings):
            raise ConfigError(
                "codebook embeddings contain NaN or inf: recompute the item embeddings "
                "(delete the embedding cache) before fitting the codebook."
            )
        return capacity

    @torch.no_grad()
    def fit(self, embeddings):
        """Learn the codewords on a base pool ``embeddings`` [n, D]; keeps its codes in ``codes``.

        Returns:
            self
        """
        capacity = self._check_pool(embeddings)
        generator = torch.Generator().manual_seed(self.seed)
        residual = self._fit_rows(embeddings, generator).detach().float()  # [m, D]
        centroids = []
        for _ in range(self.n_layers):
            layer_centroids, layer_codes = balanced_cosine_kmeans(
                residual, self.codebook_size, capacity, self.n_iters, generator
            )  # [C, D], [n]
            residual, _ = remove_projection(residual, layer_centroids[layer_codes])
            centroids.append(layer_centroids)
        self.centroids = torch.stack(centroids)  # [L, C, D]
        # The balanced assignment only shapes the codewords: the pool's codes and the decode
        # scales come from the argmax encoding that ``encode`` gives every item at run time,
        # so each scale is the mean coefficient of exactly the items that decode with it.
        codes, coefficients, _ = self._argmax_encode(embeddings)  # [n, L], [n, L], all pool items
        self.scales = torch.stack([self._mean_coefficient_per_codeword(coefficients[:, layer], codes[:, layer])
                                   for layer in range(self.n_layers)])  # [L, C]
        self.codes = codes.to(self.code_dtype)  # [n, L]
        return self

    def _fit_rows(self, embeddings, generator):
        """The pool ``[n, D]``, or a seeded sample of ``fit_sample`` of its rows ``[m, D]``
        (sorted indices, drawn only when the pool is larger, so a small pool fits as a whole)."""
        n_pool = embeddings.shape[0]
        if self._fitted_count(n_pool) == n_pool:
            return embeddings
        sample = torch.randperm(n_pool, generator=generator)[:self.fit_sample]  # [m]
        return embeddings[torch.sort(sample).values.to(embeddings.device)]

    def _mean_coefficient_per_codeword(self, coefficient, codes):
        sums = sum_per_cluster(coefficient.unsqueeze(1), codes, self.codebook_size).squeeze(1)  # [C]
        counts = torch.bincount(codes, minlength=self.codebook_size)  # [C]
        mean = sums / counts.clamp_min(1)  # [C]
        return torch.where(counts > 0, mean, torch.ones_like(mean))

    def _check_fitted(self):
        if not self.is_fitted:
            raise RuntimeError("the codebook is not fitted: call fit(item_embeddings) or load a state_dict first.")

    @torch.no_grad()
    def encode(self, embeddings, return_residual=False):
        """Codes [n, L] (``code_dtype``) of ``embeddings`` [n, D]: argmax-cosine per layer, no cap.

        Rows are encoded ``ENCODE_CHUNK_ROWS`` at a time; each row's codes do not depend on
        the chunking. With ``return_residual=True`` also returns the residual left after the
        last layer [n, D].
        """
        self._check_fitted()
        codes, _, residual = self._argmax_encode(embeddings, return_residual)
        codes = codes.to(self.code_dtype)  # [n, L]
        return (codes, residual) if return_residual else codes

    def _argmax_encode(self, embeddings, return_residual=False):
        """Long codes [n, L], projection coefficients [n, L] and (``return_residual``, else
        None) the last residual [n, D] of argmax-cosine encoding, chunk by chunk."""
        n_rows = embeddings.shape[0]
        device = self.centroids.device
        codes = torch.empty(n_rows, self.n_layers, dtype=torch.long, device=device)  # [n, L]
        coefficients = self.centroids.new_empty(n_rows, self.n_layers)  # [n, L]
        residual = self.centroids.new_empty(n_rows, self.embedding_dim) if return_residual else None
        for start in range(0, n_rows, ENCODE_CHUNK_ROWS):
            rows = slice(start, start + ENCODE_CHUNK_ROWS)
            chunk_codes, chunk_coefficients, chunk_residual = self._encode_rows(embeddings[rows])
            codes[rows], coefficients[rows] = chunk_codes, chunk_coefficients
            if residual is not None:
                residual[rows] = chunk_residual
        return codes, coefficients, residual

    def _encode_rows(self, embeddings):
        """:meth:`_argmax_encode` of one chunk ``[b, D]``: codes [b, L], coefficients [b, L],
        last residual [b, D]."""
        residual = embeddings.detach().to(self.centroids)  # [b, D]
        codes, coefficients = [], []
        for layer in range(self.n_layers):
            layer_codes = cosine_assign(residual, self.centroids[layer])  # [b]
            residual, coefficient = remove_projection(residual, self.centroids[layer][layer_codes])
            codes.append(layer_codes)
            coefficients.append(coefficient)
        return torch.stack(codes, dim=1), torch.stack(coefficients, dim=1), residual

    def fit_encode(self, embeddings):
        """``fit`` on ``embeddings`` and return its codes [n, L] (those ``encode`` gives)."""
        return self.fit(embeddings).codes

    def decode(self, codes, n_layers=None):
        """Approximate embeddings [n, D] from codes [n, L']: ``sum_l scales[l, b_l] * c_{l, b_l}``.

        Uses the first ``n_layers`` layers (default: all columns of ``codes``). Differentiable
        with respect to nothing (buffers only); cheap enough to run inside a forward pass.
        """
        self._check_fitted()
        n_used = codes.shape[1] if n_layers is None else n_layers
        if not 1 <= n_used <= min(codes.shape[1], self.n_layers):
            raise ValueError(
                f"cannot decode {n_used} layers from codes with {codes.shape[1]} columns "
                f"and a {self.n_layers}-layer codebook."
            )
        index = codes[:, :n_used].to(self.centroids.device).long()  # [n, L'], uint8 would index as a mask
        # every codeword times its scale, the layers stacked in one table: one fused gather and
        # sum per item (long histories decode without [n, L', D] temporaries)
        table = (self.scales[:n_used].unsqueeze(2) * self.centroids[:n_used]).flatten(0, 1)  # [L' * C, D]
        offsets = torch.arange(n_used, device=index.device) * self.codebook_size  # [L']
        return F.embedding_bag(index + offsets, table, mode="sum")  # [n, D]

    def _partial_decodes(self, codes, n_used):
        """The decode from the first 1, 2, .., ``n_used`` layers, one after the other [n, D]
        (the same tensor, updated in place)."""
        index = codes.to(self.centroids.device).long()  # [n, L'], uint8 would index as a mask
        recon = self.centroids.new_zeros(index.shape[0], self.embedding_dim)  # [n, D]
        for layer in range(n_used):
            scale = self.scales[layer][index[:, layer]]  # [n]
            recon += scale.unsqueeze(1) * self.centroids[layer][index[:, layer]]  # [n, D]
            yield recon

    # ------------------------------------------------------------------ reports

    def recon_cos_per_layer(self, embeddings, codes=None):
        """Mean cosine between ``embeddings`` and their decode with the first 1, 2, .., L layers.

        ``codes`` default to ``encode(embeddings)``; pass ``self.codes`` for the fitted pool.
        """
        codes = self.encode(embeddings) if codes is None else codes
        return [float(mean) for mean in self.recon_cosines(embeddings, codes).mean(dim=0)]

    def recon_cosines(self, embeddings, codes):
        """Cosine of every row of ``embeddings`` [n, D] with its decode from the first 1, 2,
        .., L' layers of ``codes`` [n, L'] -> [n, L'], ``ENCODE_CHUNK_ROWS`` rows at a time and
        every layer in the same pass."""
        self._check_fitted()
        n_used = min(codes.shape[1], self.n_layers)
        cosines = self.centroids.new_empty(codes.shape[0], n_used)  # [n, L']
        for start in range(0, codes.shape[0], ENCODE_CHUNK_ROWS):
            rows = slice(start, start + ENCODE_CHUNK_ROWS)
            target = embeddings[rows].detach().to(self.centroids)  # [b, D]
            for layer, recon in enumerate(self._partial_decodes(codes[rows], n_used)):
                cosines[rows, layer] = F.cosine_similarity(target, recon, dim=1)
        return cosines

    @staticmethod
    def count_full_code_collisions(codes):
        """Number of items whose full code tuple [L] is shared with at least one other item."""
        if codes.shape[0] == 0:
            return 0
        _, inverse, counts = torch.unique(code_keys(codes), return_inverse=True, return_counts=True)
        return int((counts[inverse] > 1).sum())

    @torch.no_grad()
    def stats(self, embeddings, codes=None):
        """Stage-1 report on ``embeddings`` [n, D] and their codes [n, L].

        ``codes`` default to ``encode(embeddings)`` (plain argmax); pass ``self.codes`` to
        report the balanced codes of the fitted pool.

        Returns:
            dict of plain Python numbers: n_items, embedding_dim, codebook_layers,
            codebook_size, bytes_per_item_fp32, bytes_per_item_codes, compression_ratio,
            recon_cos_mean, recon_cos_min, recon_cos_per_layer, full_code_collisions,
            unique_codes, codes_used (per layer), max_cluster_share and min_cluster_share (per
            layer: the largest / smallest share of the items one codeword holds), codeword_entropy
            (per layer: entropy of the codeword counts over log C; 1 = every codeword as full).
        """
        codes = self.encode(embeddings) if codes is None else codes
        n_items = codes.shape[0]
        per_layer_cos = self.recon_cosines(embeddings, codes)  # [n, L]
        recon_cos = per_layer_cos[:, -1]  # [n]
        bytes_fp32 = self.embedding_dim * 4
        bytes_codes = self.n_layers * torch.empty(0, dtype=self.code_dtype).element_size()
        per_layer_counts = [
            torch.bincount(codes[:, layer].long(), minlength=self.codebook_size) for layer in range(self.n_layers)
        ]  # L x [C]
        return {
            "n_items": int(n_items),
            "embedding_dim": int(self.embedding_dim),
            "codebook_layers": self.n_layers,
            "codebook_size": self.codebook_size,
            "bytes_per_item_fp32": int(bytes_fp32),
            "bytes_per_item_codes": int(bytes_codes),
            "compression_ratio": bytes_fp32 / bytes_codes,
            "recon_cos_mean": float(recon_cos.mean()),
            "recon_cos_min": float(recon_cos.min()),
            "recon_cos_per_layer": [float(mean) for mean in per_layer_cos.mean(dim=0)],
            "full_code_collisions": self.count_full_code_collisions(codes),
            "unique_codes": int(torch.unique(code_keys(codes)).shape[0]),
            "codes_used": [int((counts > 0).sum()) for counts in per_layer_counts],
            "max_cluster_share": [float(counts.max()) / max(n_items, 1) for counts in per_layer_counts],
            "min_cluster_share": [float(counts.min()) / max(n_items, 1) for counts in per_layer_counts],
            "codeword_entropy": [normalised_entropy(counts) for counts in per_layer_counts],
        }


def code_keys(codes):
    """One integer per code tuple ``[n, L] -> [n]``, equal exactly when the tuples are: the
    tuple read as a number in base ``max code + 1`` (1-D ``unique`` is far faster than
    ``unique(dim=0)`` on a million rows); rows themselves when that number overflows int64."""
    codes = codes.long()
    if codes.numel() == 0:
        return codes
    base = int(codes.max()) + 1
    if codes.shape[1] * math.log2(max(base, 2)) >= 62:
        return torch.unique(codes, dim=0, return_inverse=True)[1]
    weights = base ** torch.arange(codes.shape[1], device=codes.device)  # [L]
    return (codes * weights).sum(dim=1)  # [n]


def normalised_entropy(counts):
    """Entropy of the distribution ``counts`` [C] over ``log C``: 1 when every entry is equal."""
    if counts.numel() < 2 or int(counts.sum()) == 0:
        return 1.0
    share = counts.double() / counts.sum()  # [C]
    entropy = -(share * share.clamp_min(1e-300).log()).sum()
    return float(entropy / math.log(counts.numel()))


def all_finite(embeddings):
    """No NaN or inf in ``embeddings`` [n, D], checked chunk by chunk (no [n, D] mask)."""
    return all(bool(torch.isfinite(embeddings[start:start + ENCODE_CHUNK_ROWS]).all())
               for start in range(0, embeddings.shape[0], ENCODE_CHUNK_ROWS))
