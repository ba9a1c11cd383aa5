"""Multi-interest retrieval: an item's score is its best score over the user's K interests.

``score(u, i) = max_k cos(h_k(u), e_i)`` (``normalize=False``: ``max_k h_k · e_i``) ranks the
catalogue; :func:`merge_topk` lets every interest retrieve its own list and merges the lists
round-robin (the source of the diversity gain), and :func:`round_robin_scores` gives the whole
catalogue in that merged order, for a full ranking. Pure torch, no RecBole import.
"""
import math

import torch
import torch.nn.functional as F

from recbole_hymirec.errors import ConfigError

EPS = 1e-12


def unit_rows(x, normalize=True):
    """``x`` L2-normalised along its last dimension, or ``x`` itself for dot-product scores."""
    return F.normalize(x, dim=-1, eps=EPS) if normalize else x


def max_over_interests(interests, item_emb, normalize=True):
    """``max_k cos(h_k, e_i)`` (``normalize=False``: ``max_k h_k · e_i``) for every item
    -> [B, n_items] (full_sort_predict).

    One [B, n] matrix per interest, so memory stays O(B * n) rather than O(B * K * n).
    """
    unit_interests = unit_rows(interests, normalize)  # [B, K, d]
    unit_items = unit_rows(item_emb, normalize)  # [n, d]
    scores = unit_interests[:, 0] @ unit_items.T  # [B, n]
    for k in range(1, interests.shape[1]):
        scores = torch.maximum(scores, unit_interests[:, k] @ unit_items.T)
    return scores


def max_over_interests_in_chunks(interests, item_rows, n_items, chunk_items, normalize=True):
    """:func:`max_over_interests` ``[B, n_items]`` with the items taken ``chunk_items`` at a time:
    ``item_rows(slice)`` gives a chunk's embeddings ``[c, d]``, so neither the whole item table
    nor a ``[B, n_items]`` temporary beside the result is ever held. ``chunk_items`` 0 (or at
    least ``n_items``): one chunk. The scores are those of one chunk up to float rounding (a
    BLAS may sum a chunk of a few items in another order)."""
    if not chunk_items or chunk_items >= n_items:
        return max_over_interests(interests, item_rows(slice(None)), normalize)
    scores = interests.new_empty(interests.shape[0], n_items)  # [B, n]
    for start in range(0, n_items, chunk_items):
        chunk = slice(start, start + chunk_items)
        scores[:, chunk] = max_over_interests(interests, item_rows(chunk), normalize)  # [B, c]
    return scores


def score_items(interests, items, normalize=True):
    """``max_k cos(h_k, e)`` (``normalize=False``: ``max_k h_k · e``) of one given item per row:
    interests [B, K, d], items [B, d] -> [B]."""
    unit_interests = unit_rows(interests, normalize)  # [B, K, d]
    unit_items = unit_rows(items, normalize)  # [B, d]
    return torch.einsum("bkd,bd->bk", unit_interests, unit_items).max(dim=1).values


def _one_interest_logits(interest, unit_items, item_bias, scale):
    """One interest's ranking scores ``[B, n]``: its similarity to every item, or the model's
    logit ``scale * s + item_bias`` when there is an item bias."""
    scores = interest @ unit_items.T  # [B, n]
    return scores if item_bias is None else scale * scores + item_bias


def round_robin_scores(interests, item_emb, normalize=True, item_bias=None, scale=1.0,
                       padding_idx=0):
    """Scores ``[B, n_items]`` whose descending order is :func:`merge_topk`'s round-robin merge
    of the K interests' own rankings, over the whole catalogue.

    Interest ``k`` ranks every item by its own score (``scale * s + item_bias`` with a bias);
    an item's merged position is ``min_k (rank_k * K + k)``: interest 1's first item, interest
    2's first, ..., interest 1's second, ..., an item taking the place of its earliest
    appearance. The score is minus that position (exact in float32 below 2^24 positions).
    ``padding_idx`` ranks last in every interest's list. Equal scores within an interest rank
    the lower id first (``merge_topk``'s ``topk`` may order such ties otherwise). A protocol
    that masks seen items removes them from this merged order afterwards, which is not the
    merge of lists that never held them.
    """
    unit_interests = unit_rows(interests, normalize)  # [B, K, d]
    unit_items = unit_rows(item_emb, normalize)  # [n, d]
    n_interests, n_items = interests.shape[1], item_emb.shape[0]
    places = torch.arange(n_items, device=interests.device).expand(interests.shape[0], n_items)
    best = None
    for k in range(n_interests):
        scores = _one_interest_logits(unit_interests[:, k], unit_items, item_bias, scale)  # [B, n]
        if padding_idx is not None:
            scores[:, padding_idx] = -math.inf
        order = scores.argsort(dim=1, descending=True, stable=True)  # [B, n]
        rank = torch.empty_like(order).scatter_(1, order, places)  # [B, n]: 0 = its first item
        position = rank * n_interests + k  # [B, n]
        best = position if best is None else torch.minimum(best, position)
    return -best.float()  # [B, n]


def merge_topk(interests, item_emb, k, exclude=None, padding_idx=0, item_bias=None, scale=1.0,
               normalize=True):
    """Every interest retrieves its own top-``k``; the lists are merged round-robin.

    Order: interest 1's first item, interest 2's first, ..., interest 1's second, ...; an item
    already taken is skipped; the merged list is truncated to ``k``.

    Args:
        interests: [B, K, d]. item_emb: [n_items, d].
        k: length of the merged list.
        exclude: optional bool mask [B, n_items] or [n_items], True = never retrieve
            (e.g. the user's history).
        padding_idx: item id never retrieved (RecBole's padding item 0); None to allow all.
        item_bias, scale: optional per-item offset [n_items]: each interest ranks by
            ``scale * cos + item_bias`` (the model's logits) instead of the cosine.
        normalize: False ranks by dot products instead of cosines.

    Returns:
        LongTensor [B, k] of item ids; -1 fills the tail when fewer than ``k`` items are allowed.
    """
    n_items = item_emb.shape[0]
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"merge_topk k={k} is invalid: use an integer >= 1 (e.g. 50).")
    k = int(k)
    per_interest_k = min(k, n_items)
    unit_interests = unit_rows(interests, normalize)  # [B, K, d]
    unit_items = unit_rows(item_emb, normalize)  # [n, d]
    blocked = _blocked_items(exclude, padding_idx, n_items, interests.device)  # [B or 1, n] or None

    lists, allowed = [], []
    for h in range(interests.shape[1]):
        scores = _one_interest_logits(unit_interests[:, h], unit_items, item_bias, scale)  # [B, n]
        if blocked is not None:
            scores = scores.masked_fill(blocked, -math.inf)
        top = scores.topk(per_interest_k, dim=1)
        lists.append(top.indices)
        allowed.append(torch.isfinite(top.values))
    candidates = torch.stack(lists, dim=2).flatten(1)  # [B, k' * K]: rank-major = round robin
    allowed = torch.stack(allowed, dim=2).flatten(1)  # [B, k' * K]
    return _first_unique(candidates, allowed, k)


def _blocked_items(exclude, padding_idx, n_items, device):
    blocked = None
    if exclude is not None:
        blocked = exclude.to(device=device, dtype=torch.bool)
        if blocked.dim() == 1:
            blocked = blocked.unsqueeze(0)  # [1, n]
        if blocked.shape[-1] != n_items:
            raise ValueError(f"exclude mask has {blocked.shape[-1]} items, item_emb has {n_items}")
    if padding_idx is not None:
        pad = torch.zeros(1, n_items, dtype=torch.bool, device=device)
        pad[0, padding_idx] = True
        blocked = pad if blocked is None else blocked | pad
    return blocked


def _first_unique(candidates, allowed, k):
    """Keep the first occurrence of every allowed id, in order, truncated/padded to ``k``."""
    sorted_ids, order = torch.sort(candidates, dim=1, stable=True)  # equal ids: earliest first
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    keep = torch.zeros_like(first).scatter(1, order, first) & allowed  # [B, P]
    # stable sort on "not kept" moves kept candidates to the front in their original order
    position = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :k]  # [B, k']
    merged = candidates.gather(1, position).masked_fill(~keep.gather(1, position), -1)
    if merged.shape[1] < k:
        merged = F.pad(merged, (0, k - merged.shape[1]), value=-1)
    return merged
