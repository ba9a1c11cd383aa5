# -*- coding: utf-8 -*-
"""DMIL — disentangled multi-interest learning.

For a training row the targets are the next ``W`` items. They are clustered with cosine
k-means into ``k_b = min(K, #targets)`` groups (fewer with ``cluster_max_cosine``: a window of
one theme is one group, not ``k_b`` pieces that would pull every interest to that theme), the
groups are matched to the ``K`` interest
embeddings with the Hungarian algorithm (maximum total cosine, so distinct groups train
distinct interests), and every target is trained against its matched interest only with an
InfoNCE loss (full softmax over the catalogue, or sampled negatives). ``W = 1`` degenerates to
ComiRec-style hard assignment: the interest closest to the target takes it.

A sampled negative equal to the positive item is masked *by id*. HLLM masks every negative
with ``cos > 0.99`` instead, which lets the loss reach 0 by collapsing all embeddings.

The loss scores a target by the ranking's own score, the max over interests (retrieval.py).
With ``similarity="dot"`` every score is the plain dot product ``h_k(u) · e_i`` instead (SASRec's
scorer: the norms, not a learned scale, set the logit range); the target clustering and the
matching stay cosine, as they only compare directions.

The loss reads no tensor value on the host (no device sync in a training step): every target
slot is scored and the padding slots are left out of the mean, and for ``K <= 6`` the Hungarian
step runs on the device by enumerating the ``K!`` matchings.

Pure torch + scipy (Hungarian step for ``K > 6`` only), no RecBole import.
"""

import itertools
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.kmeans import cosine_kmeans
from recbole_hymirec.model.retrieval import EPS as _EPS, max_over_interests, unit_rows as _unit

SIMILARITIES = ("cosine", "dot")
# the most interests matched by enumerating every matching on the device (6! = 720 of them);
# more go to scipy's solver on the host
MAX_ENUMERATED_INTERESTS = 6


# --------------------------------------------------------------------------- assignment


def match_clusters_to_interests(centres, k_per_row, interests):
    """Hungarian matching of every row's ``k_b`` cluster centres to its interests.

    On the device for ``K' <= MAX_ENUMERATED_INTERESTS`` (:func:`match_by_enumeration`), with
    scipy's solver on the host above that.

    Args:
        centres: [B, K, d] cluster centres. k_per_row: [B] clusters used per row.
        interests: [B, K', d] interest embeddings, ``K' >= k_b``.

    Returns:
        cluster_to_interest [B, K] long: the interest of cluster ``c``, -1 for unused clusters.
        Distinct clusters of a row get distinct interests; the total cosine is maximal.
    """
    n_clusters, n_interests = centres.shape[1], interests.shape[1]
    # only reachable with more cluster slots than interests (never so in DMIL): checked on the host
    if n_clusters > n_interests and bool((k_per_row > n_interests).any()):
        raise ValueError(f"cannot match {int(k_per_row.max())} clusters to only {n_interests} "
                         "interests")
    cosine = torch.einsum(
        "bkd,bjd->bkj",
        F.normalize(centres.float(), dim=-1, eps=_EPS),
        F.normalize(interests.detach().float(), dim=-1, eps=_EPS),
    )  # [B, K, K']
    if n_interests <= MAX_ENUMERATED_INTERESTS:
        return match_by_enumeration(cosine, k_per_row)
    return match_with_scipy(cosine, k_per_row)


_MATCHINGS = {}  # (K', slots, device) -> every matching [P, slots], built once per device


def _all_matchings(n_interests, n_slots, device):
    """Every injective map of ``n_slots`` clusters into ``n_interests`` interests ``[P, slots]``,
    in lexicographic order (``P = K'! / (K' - slots)!``)."""
    key = (n_interests, n_slots, str(device))
    if key not in _MATCHINGS:
        maps = list(itertools.permutations(range(n_interests), n_slots))
        _MATCHINGS[key] = torch.tensor(maps, dtype=torch.long).reshape(len(maps), n_slots).to(device)
    return _MATCHINGS[key]


def match_by_enumeration(cosine, k_per_row):
    """The maximum-cosine matching of every row's first ``k_b`` clusters, on the device: the
    total of every matching, then the best one (the first in lexicographic order on a tie).

    Args:
        cosine: [B, K, K'] cosine of each cluster centre with each interest.
        k_per_row: [B] clusters used per row (``<= K'``).

    Returns:
        cluster_to_interest [B, K] long, -1 for unused clusters.
    """
    batch, n_clusters, n_interests = cosine.shape
    n_slots = min(n_clusters, n_interests)
    matchings = _all_matchings(n_interests, n_slots, cosine.device)  # [P, slots]
    slots = torch.arange(n_slots, device=cosine.device)  # [slots]
    used = slots.unsqueeze(0) < k_per_row.unsqueeze(1)  # [B, slots]
    gains = cosine[:, slots.unsqueeze(0), matchings]  # [B, P, slots]
    totals = (gains * used.unsqueeze(1)).sum(dim=2)  # [B, P]; unused clusters add exact zeros
    chosen = matchings[totals.argmax(dim=1)]  # [B, slots]
    result = cosine.new_full((batch, n_clusters), -1, dtype=torch.long)  # [B, K]
    result[:, :n_slots] = torch.where(used, chosen, -1)
    return result


def match_with_scipy(cosine, k_per_row):
    """:func:`match_by_enumeration` on the host with scipy's ``linear_sum_assignment`` (one
    solver call per row): for more interests than enumeration can afford."""
    k_list = k_per_row.tolist()
    cosine = cosine.cpu().numpy()
    result = np.full(cosine.shape[:2], -1, dtype=np.int64)  # [B, K]
    for b, k in enumerate(k_list):
        if k == 1:  # the common W=1 case: no solver needed
            result[b, 0] = int(cosine[b, 0].argmax())
        elif k > 1:
            clusters, chosen = linear_sum_assignment(cosine[b, :k], maximize=True)
            result[b, clusters] = chosen
    return torch.from_numpy(result).to(k_per_row.device)


@torch.no_grad()
def assign_targets_to_interests(target_emb, valid, interests, n_iters=5, max_seed_cosine=None):
    """Interest index of every target: k-means of the row's targets + Hungarian matching.

    The assignment is a discrete choice, computed without gradient.

    Args:
        target_emb: [B, W, d] target item embeddings. valid: [B, W] bool.
        interests: [B, K, d] interest embeddings.
        n_iters, max_seed_cosine: of :func:`cosine_kmeans`.

    Returns:
        interest_index [B, W] long in ``[0, K)``, -1 for invalid targets.
    """
    valid = valid.bool()
    assign, centres, k_per_row = cosine_kmeans(target_emb, valid, interests.shape[1], n_iters,
                                               max_seed_cosine)
    cluster_to_interest = match_clusters_to_interests(centres, k_per_row, interests)  # [B, K]
    index = cluster_to_interest.gather(1, assign.clamp(min=0))  # [B, W]
    return index.masked_fill(~valid, -1)


# --------------------------------------------------------------------------- loss

class DMILLoss(nn.Module):
    """Matching-based contrastive loss between target groups and interest embeddings.

    Args:
        temperature_init: initial temperature; the learnable logit scale starts at its inverse.
        max_logit_scale: cap of the logit scale (CLIP's 100), applied when it is used.
        kmeans_iters: k-means iterations of the target clustering.
        cluster_max_cosine: None (always ``min(K, W)`` clusters), or a cosine in ``(-1, 1]``: a
            target opens a new cluster only if its cosine to every cluster opened before is
            below it.
        similarity: ``cosine`` (logit ``scale * cos``) or ``dot`` (logit ``h · e``, scale fixed
            at 1: the dot product's norms set the logit range themselves).

    ``forward`` returns the loss; :meth:`forward_with_stats` also returns the assignment, and the
    last one is kept in ``self.last_interest_index`` ([B, W], -1 for padding targets).
    """

    def __init__(self, temperature_init=0.07, max_logit_scale=100.0, kmeans_iters=5,
                 similarity="cosine", cluster_max_cosine=None):
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ConfigError(f"similarity={similarity!r} is not one of {list(SIMILARITIES)}. "
                              "Fix: --similarity=cosine (the default).")
        if not temperature_init > 0:
            raise ConfigError(f"dmil temperature_init={temperature_init} must be > 0 (e.g. 0.07).")
        if not max_logit_scale > 0:
            raise ConfigError(f"dmil max_logit_scale={max_logit_scale} must be > 0 (e.g. 100).")
        if int(kmeans_iters) != kmeans_iters or kmeans_iters < 0:
            raise ConfigError(f"dmil kmeans_iters={kmeans_iters} is invalid: use an integer >= 0 (e.g. 5).")
        if cluster_max_cosine is not None and (isinstance(cluster_max_cosine, bool) or not isinstance(
                cluster_max_cosine, (int, float)) or not -1 < cluster_max_cosine <= 1):
            raise ConfigError(f"dmil_cluster_max_cosine={cluster_max_cosine!r} must be a cosine in "
                              "(-1, 1] or null. Fix: --dmil_cluster_max_cosine=0.5, or null for "
                              "min(K, W) clusters always.")
        self.max_logit_scale = float(max_logit_scale)
        self.kmeans_iters = int(kmeans_iters)
        self.cluster_max_cosine = None if cluster_max_cosine is None else float(cluster_max_cosine)
        self.normalize = similarity == "cosine"
        if self.normalize:
            self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)))
        else:  # a fixed scale of 1
            self.register_buffer("log_logit_scale", torch.zeros(()))
        self.last_interest_index = None

    def extra_repr(self):
        return (f"max_logit_scale={self.max_logit_scale}, kmeans_iters={self.kmeans_iters}, "
                f"cluster_max_cosine={self.cluster_max_cosine}, "
                f"similarity={'cosine' if self.normalize else 'dot'}")

    def logit_scale(self):
        """exp of the learnable log scale, capped at ``max_logit_scale`` (keeps its gradient below);
        1 for dot-product scores."""
        return self.log_logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()

    def forward(self, interests, target_ids, item_emb, neg_ids=None, item_bias=None, seen_ids=None):
        return self.forward_with_stats(interests, target_ids, item_emb, neg_ids, item_bias,
                                       seen_ids)[0]

    def forward_with_stats(self, interests, target_ids, item_emb, neg_ids=None, item_bias=None,
                           seen_ids=None):
        """Loss and assignment.

        Args:
            interests: [B, K, d] interest embeddings.
            target_ids: [B, W] (or [B]) long target item ids, 0 = padding.
            item_emb: [n_items, d] item representations (row 0: RecBole's padding item).
            neg_ids: None for a full softmax over the catalogue, else sampled negatives
                [B] / [B, S] (shared by the row's targets) or [B, W, S] (per target).
            item_bias: None, or a per-item logit offset [n_items] added after the scaled
                cosine (a learnable popularity prior: cosines alone cannot express it).
            seen_ids: None, or the items each row has already interacted with [B, S]
                (0 = padding): never negatives of that row's targets (a ranking that masks
                seen items never has to push them down), a repeated positive stays positive.
                A row's other targets are never its negatives either, with or without it.

        Returns:
            (scalar loss averaged over valid targets (0 without any),
             dict(interest_index=[B, W] long, n_targets=0-dim long, logit_scale=0-dim float)):
            the statistics stay tensors on the device; reading them is the caller's choice.
        """
        target_ids, neg_ids = self._prepare(interests, target_ids, item_emb, neg_ids)
        valid = target_ids > 0  # [B, W]
        unit_interests = F.normalize(interests, dim=-1, eps=_EPS)  # [B, K, d]

        interest_index = assign_targets_to_interests(
            item_emb[target_ids].detach(), valid, unit_interests.detach(), self.kmeans_iters,
            self.cluster_max_cosine)  # [B, W]
        self.last_interest_index = interest_index
        stats = {"interest_index": interest_index, "n_targets": valid.sum(),
                 "logit_scale": self.logit_scale().detach()}

        rows, slots = _every_slot(target_ids)  # [T], [T] with T = B * W
        queries = unit_interests if self.normalize else interests  # [B, K, d]
        query = queries[rows, interest_index[rows, slots].clamp(min=0)].unsqueeze(1)  # [T, 1, d]
        loss = self._softmax_loss(query, None, target_ids, rows, slots, item_emb, neg_ids,
                                  item_bias, _with_co_targets(seen_ids, target_ids))
        return loss, stats

    def readout_loss(self, interests, target_ids, item_emb, neg_ids=None, item_bias=None,
                     seen_ids=None):
        """Softmax loss on the ranking's own score, ``scale * max_k s(h_k, e_i) + b_i``, for
        every valid target (same arguments as :meth:`forward`).

        The DMIL loss trains a target against its matched interest only: it never teaches the
        other interests to stay below the negatives, yet the max readout ranks by all of them.
        """
        target_ids, neg_ids = self._prepare(interests, target_ids, item_emb, neg_ids)
        rows, slots = _every_slot(target_ids)  # [T], [T] with T = B * W
        query = _unit(interests, self.normalize)  # [B, K, d]: one per row, not per target
        return self._softmax_loss(query, rows, target_ids, rows, slots, item_emb, neg_ids,
                                  item_bias, _with_co_targets(seen_ids, target_ids))

    def _prepare(self, interests, target_ids, item_emb, neg_ids):
        """``[B]`` targets / negatives as ``[B, 1]``, then the shape checks."""
        if target_ids.dim() == 1:
            target_ids = target_ids.unsqueeze(1)  # [B, 1]
        if neg_ids is not None and neg_ids.dim() == 1:
            neg_ids = neg_ids.unsqueeze(1)  # [B, 1]
        self._check_inputs(interests, target_ids, item_emb, neg_ids)
        return target_ids, neg_ids

    def _softmax_loss(self, query, query_rows, target_ids, rows, slots, item_emb, neg_ids,
                      item_bias, seen_ids):
        """Cross-entropy of each target ``target_ids[rows, slots]`` against its query interests,
        scored by their max, averaged over the real targets (padding slots, id 0, score but
        count for nothing): ``query`` is ``[T, K', d]`` (one per target, ``query_rows`` None;
        ``K' = 1``: the matched interest) or ``[B, K, d]`` shared by the targets of a row
        (``query_rows`` [T]: a full softmax then scores each row once, not once per target)."""
        positive = target_ids[rows, slots]  # [T], 0 = a padding slot
        scale = self.logit_scale()
        if neg_ids is None:
            logits = self._full_logits(query, item_emb, scale)  # [T or B, n]
            if query_rows is not None:
                logits = logits[query_rows]  # [T, n]
            if item_bias is not None:
                logits = logits + item_bias  # [T, n]; padding stays -inf
            if seen_ids is not None:
                logits = _mask_seen(logits, seen_ids[rows], positive)  # [T, n]
            losses = F.cross_entropy(logits.float(), positive, reduction="none")  # [T]
            return _mean_over_targets(losses, positive)
        negatives = neg_ids[rows] if neg_ids.dim() == 2 else neg_ids[rows, slots]  # [T, S]
        if query_rows is not None:
            query = query[query_rows]  # [T, K, d]
        logits = self._sampled_logits(query, positive, negatives, item_emb, scale)  # [T, 1 + S]
        if item_bias is not None:
            logits = logits + item_bias[torch.cat([positive.unsqueeze(1), negatives], 1)]
        if seen_ids is not None:
            seen_negative = (negatives.unsqueeze(2) == seen_ids[rows].unsqueeze(1)).any(2)  # [T, S]
            logits[:, 1:] = logits[:, 1:].masked_fill(seen_negative, -math.inf)
        labels = positive.new_zeros(positive.shape)  # [T] the positive is column 0
        return _mean_over_targets(F.cross_entropy(logits.float(), labels, reduction="none"), positive)

    def _full_logits(self, query, item_emb, scale):
        logits = scale * max_over_interests(query, item_emb, self.normalize)  # [T, n]: the ranking's
        # item 0 is RecBole's padding item: never a candidate
        return logits.masked_fill(_padding_column(logits), -math.inf)

    def _sampled_logits(self, query, positive, negatives, item_emb, scale):
        # normalise only the rows used: a large catalogue is never touched as a whole
        pos_emb = _unit(item_emb[positive], self.normalize)  # [T, d]
        neg_emb = _unit(item_emb[negatives], self.normalize)  # [T, S, d]
        pos_logit = scale * torch.einsum("tkd,td->tk", query, pos_emb).amax(1, keepdim=True)  # [T, 1]
        neg_logit = scale * torch.einsum("tkd,tsd->tks", query, neg_emb).amax(1)  # [T, S]
        # mask by id only: a sampled copy of the positive, and padding negatives (id 0)
        drop = (negatives == positive.unsqueeze(1)) | (negatives == 0)  # [T, S]
        neg_logit = neg_logit.masked_fill(drop, -math.inf)
        return torch.cat([pos_logit, neg_logit], dim=1)

    @staticmethod
    def _check_inputs(interests, target_ids, item_emb, neg_ids):
        if interests.dim() != 3:
            raise ValueError(f"interests must be [B, K, d], got {tuple(interests.shape)}")
        if item_emb.dim() != 2 or item_emb.shape[1] != interests.shape[2]:
            raise ValueError(f"item_emb must be [n_items, {interests.shape[2]}], got {tuple(item_emb.shape)}")
        if target_ids.shape[0] != interests.shape[0]:
            raise ValueError(f"target_ids {tuple(target_ids.shape)} and interests "
                             f"{tuple(interests.shape)} disagree on the batch size")
        if neg_ids is not None and (neg_ids.shape[0] != target_ids.shape[0] or neg_ids.dim() > 3 or (
                neg_ids.dim() == 3 and neg_ids.shape[1] != target_ids.shape[1])):
            raise ValueError(f"neg_ids must be [B], [B, S] or [B, W, S] for targets "
                             f"{tuple(target_ids.shape)}, got {tuple(neg_ids.shape)}")


def _every_slot(target_ids):
    """``(rows, slots)`` of every slot of ``[B, W]`` targets, row by row, each ``[B * W]``: a
    fixed shape (selecting the real targets would wait for the device to count them)."""
    batch, window = target_ids.shape
    rows = torch.arange(batch, device=target_ids.device).unsqueeze(1).expand(batch, window)
    slots = torch.arange(window, device=target_ids.device).unsqueeze(0).expand(batch, window)
    return rows.reshape(-1), slots.reshape(-1)  # [B * W], [B * W]


def _mean_over_targets(losses, positive):
    """Mean of the per-slot losses ``[T]`` over the real targets (``positive > 0``); 0 when
    there is none, still part of the graph. A padding slot's loss (possibly inf: its label is
    the padding item, at -inf) is replaced, not multiplied, so it adds nothing."""
    real = positive > 0  # [T]
    return torch.where(real, losses, 0.0).sum() / real.sum().clamp(min=1)


def _with_co_targets(seen_ids, target_ids):
    """The items that are never negatives of a row's targets ``[B, S + W]``: its seen items
    (if any) and its own ``W`` targets. A co-target is another positive of the same row (multi-
    positive InfoNCE): as a negative it would push two targets of one interest apart."""
    return target_ids if seen_ids is None else torch.cat([seen_ids, target_ids], dim=1)


def _mask_seen(logits, seen, positive):
    """``-inf`` at each row's seen items ``[T, S]`` except its own positive ``[T]``."""
    seen = seen.masked_fill(seen == positive.unsqueeze(1), 0)  # id 0 (padding) is -inf already
    return logits.scatter(1, seen, -math.inf)


def _padding_column(logits):
    column = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    column[0] = True
    return column  # [n], broadcast over rows
