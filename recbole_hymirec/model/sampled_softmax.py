"""Sampled softmax with log-Q correction, for catalogues too large for a full softmax per row.

Each training batch draws ``S`` negatives, shared by its rows, from the training popularity
(RecBole's ``popularity`` distribution: item ``i`` with probability ``q_i`` proportional to its
training count, here ``(count_i + 1) ** alpha`` so that an item never trained on can still be
drawn and has a finite ``log q``). A softmax over ``[positive ; sampled]`` with raw logits
estimates the full softmax of a model that favours popular items; subtracting ``log q_j`` from
every sampled logit (the positive's too, as the positive is an item of the candidate set like
any other) removes that bias: with every item sampled once and a uniform ``q`` the loss equals
the full softmax exactly (Bengio & Senecal 2008; Yi et al., RecSys 2019).

The correction is a per-item logit offset, ``-log q`` [n_items], so the DMIL losses take it
where they take the learnable item bias; the positive and a row's other targets are masked
among the negatives by id there. Sampling stays on the device (``torch.multinomial``): no host
read in a training step.

:func:`rows_of_items` builds the item table a sampled step needs, computing only the rows the
step reads: the item tower never runs over the whole catalogue in training.
"""
import torch
from torch import nn

from recbole_hymirec.errors import ConfigError


class LogQNegativeSampler(nn.Module):
    """Popularity negatives and their log-Q offset.

    Args:
        item_counts: [n_items] training interactions per item id (row 0: RecBole's padding
            item, never drawn).
        n_negatives: S, negatives drawn per batch (with replacement).
        alpha: exponent of ``count + 1``; 0 draws uniformly.
    """

    def __init__(self, item_counts, n_negatives, alpha=1.0):
        super().__init__()
        if isinstance(n_negatives, bool) or int(n_negatives) != n_negatives or n_negatives < 1:
            raise ConfigError(f"sampled_negatives={n_negatives!r} must be an integer >= 1 "
                              "(0 switches sampling off). Fix: --sampled_negatives=1024")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise ConfigError(f"negative_sampling_alpha={alpha!r} must be a number >= 0 "
                              "(1 = popularity, 0 = uniform). Fix: --negative_sampling_alpha=1.0")
        if item_counts.dim() != 1 or item_counts.shape[0] < 2:
            raise ConfigError("sampled negatives need the training counts of at least one real "
                              f"item, got counts of shape {tuple(item_counts.shape)}.")
        self.n_negatives = int(n_negatives)
        self.alpha = float(alpha)
        weights = (item_counts.double().clamp(min=0) + 1.0) ** self.alpha  # [n_items]
        weights[0] = 0.0  # the padding item is never a negative
        probabilities = weights / weights.sum()  # [n_items]
        # derived from the training split at construction: not part of a checkpoint
        self.register_buffer("probabilities", probabilities.float(), persistent=False)
        # log q of the padding item is set to 0: padding candidates are masked to -inf, and an
        # infinite offset would turn them into NaN
        log_q = torch.where(probabilities > 0, probabilities.log(), torch.zeros_like(probabilities))
        self.register_buffer("log_q", log_q.float(), persistent=False)  # [n_items]

    def extra_repr(self):
        return f"n_negatives={self.n_negatives}, alpha={self.alpha}"

    def sample(self, batch_size):
        """Negatives shared by a batch's rows ``[B, S]`` (one draw of ``S`` ids, expanded)."""
        negatives = torch.multinomial(self.probabilities, self.n_negatives, replacement=True)  # [S]
        return negatives.unsqueeze(0).expand(batch_size, -1)  # [B, S]

    def logit_offset(self, item_bias=None):
        """Per-item offset of the sampled logits ``[n_items]``: ``item_bias - log q``."""
        offset = -self.log_q  # [n_items]
        return offset if item_bias is None else item_bias + offset


def rows_of_items(item_rows, item_ids, n_items):
    """An item table ``[n_items, d]`` whose rows ``item_ids`` hold ``item_rows(ids)`` and the
    others zero: what a sampled step reads of the catalogue, at the cost of its rows only.

    ``item_ids`` (any shape) may repeat an id: repeats are computed once, the extra copies
    write the padding row 0, which no loss reads (so its gradient is 0 however often it is
    written). The table's size is fixed, so nothing waits for the device to count ids.
    """
    ids = item_ids.reshape(-1).sort().values  # [U]
    repeated = torch.zeros_like(ids, dtype=torch.bool)  # [U]
    repeated[1:] = ids[1:] == ids[:-1]
    ids = ids.masked_fill(repeated, 0)  # [U]
    rows = item_rows(ids)  # [U, d]
    return rows.new_zeros(n_items, rows.shape[1]).index_put((ids,), rows)  # [n_items, d]
