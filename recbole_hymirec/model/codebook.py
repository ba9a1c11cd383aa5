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

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.kmeans import (balanced_cosine_kmeans, cluster_capacity, cosine_assign,
                                          sum_per_cluster)

_EPS = 1e-12


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
        seed (int): seed of the k-means++ initialisation; same seed, same codebook.
    """

    def __init__(self, n_layers=3, codebook_size=256, max_cluster_share=None, n_iters=20, seed=2020):
        super().__init__()
        if max_cluster_share is None:
            max_cluster_share = min(1.0, 4.0 / codebook_size) if codebook_size >= 1 else 1.0
        self._check_config(n_layers, codebook_size, max_cluster_share, n_iters)
        self.n_layers = int(n_layers)
        self.codebook_size = int(codebook_size)
        self.max_cluster_share = float(max_cluster_share)
        self.n_iters = int(n_iters)
        self.seed = int(seed)
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

    def _check_pool(self, embeddings):
        if embeddings.dim() != 2:
            raise ConfigError(
                f"codebook expects item embeddings of shape [n_items, dim], got {tuple(embeddings.shape)}."
            )
        n_items = embeddings.shape[0]
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
        if not bool(torch.isfinite(embeddings).all()):
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
        residual = embeddings.detach().float()  # [n, D]
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
        codes, coefficients, _ = self._argmax_encode(embeddings)  # [n, L], [n, L]
        self.scales = torch.stack([self._mean_coefficient_per_codeword(coefficients[:, layer], codes[:, layer])
                                   for layer in range(self.n_layers)])  # [L, C]
        self.codes = codes.to(self.code_dtype)  # [n, L]
        return self

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

        With ``return_residual=True`` also returns the residual left after the last layer [n, D].
        """
        self._check_fitted()
        codes, _, residual = self._argmax_encode(embeddings)
        codes = codes.to(self.code_dtype)  # [n, L]
        return (codes, residual) if return_residual else codes

    def _argmax_encode(self, embeddings):
        """Long codes [n, L], projection coefficients [n, L] and the last residual [n, D] of
        argmax-cosine encoding layer by layer."""
        residual = embeddings.detach().to(self.centroids)  # [n, D]
        codes, coefficients = [], []
        for layer in range(self.n_layers):
            layer_codes = cosine_assign(residual, self.centroids[layer])  # [n]
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

    # ------------------------------------------------------------------ reports

    def recon_cos_per_layer(self, embeddings, codes=None):
        """Mean cosine between ``embeddings`` and their decode with the first 1, 2, .., L layers.

        ``codes`` default to ``encode(embeddings)``; pass ``self.codes`` for the fitted pool.
        """
        codes = self.encode(embeddings) if codes is None else codes
        target = embeddings.detach().to(self.centroids)  # [n, D]
        return [
            float(F.cosine_similarity(target, self.decode(codes, n_layers=k), dim=1).mean())
            for k in range(1, self.n_layers + 1)
        ]

    @staticmethod
    def count_full_code_collisions(codes):
        """Number of items whose full code tuple [L] is shared with at least one other item."""
        if codes.shape[0] == 0:
            return 0
        _, inverse, counts = torch.unique(codes.long(), dim=0, return_inverse=True, return_counts=True)
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
            unique_codes, codes_used (per layer), max_cluster_share (per layer).
        """
        codes = self.encode(embeddings) if codes is None else codes
        n_items = codes.shape[0]
        target = embeddings.detach().to(self.centroids)  # [n, D]
        recon_cos = F.cosine_similarity(target, self.decode(codes), dim=1)  # [n]
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
            "recon_cos_per_layer": self.recon_cos_per_layer(embeddings, codes),
            "full_code_collisions": self.count_full_code_collisions(codes),
            "unique_codes": int(torch.unique(codes.long(), dim=0).shape[0]),
            "codes_used": [int((counts > 0).sum()) for counts in per_layer_counts],
            "max_cluster_share": [float(counts.max()) / max(n_items, 1) for counts in per_layer_counts],
        }
