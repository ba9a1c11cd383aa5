# -*- coding: utf-8 -*-
"""Lightweight recommender: ``M`` coarse interests from the long history (HyMiRec, stage 2).

A small transformer reads the whole long history (codebook-decoded item embeddings, cheap to
store) so that the LLM refiner only has to see the ``N`` most recent items. ``M`` learnable
query tokens are appended after the history; their output states are the coarse interests.

* Positions are *recency* positions computed from the mask: 0 is the most recent real item,
  1 the one before, ... so a row's encoding does not depend on how much padding it carries
  (left-aligned, right-aligned or any mix).
* Padded history positions are hidden from every token through the key padding mask; the
  queries are never masked, so a row with an empty history is valid (its queries attend to
  each other only) and never produces NaN.

Pure torch, no RecBole import.
"""

import torch
import torch.nn as nn

from recbole_hymirec.errors import ConfigError


def _check_positive_int(name, value, example):
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ConfigError(f"{name}={value} is invalid: use an integer >= 1 (e.g. {example}).")


def recency_positions(mask):
    """Recency position of every history slot: 0 = most recent real item -> long [B, L].

    Position of a real item = number of real items after it; padded slots get 0 (they are
    masked out of attention, so their value never matters).
    """
    real = mask.long()  # [B, L]
    after = real.flip(1).cumsum(1).flip(1) - real  # [B, L] real items strictly after each slot
    return after * real


class LightweightInterestExtractor(nn.Module):
    """Small transformer with ``n_queries`` learnable query tokens over the long history.

    Args:
        input_dim: size of the history embeddings (the decoded codebook embeddings).
        hidden_size: model width ``h``; the coarse interests are ``[B, M, h]``.
        n_layers, n_heads: transformer depth and heads (``hidden_size % n_heads == 0``).
        n_queries: ``M``, the number of coarse interests.
        max_len: the longest history the position table covers (``L_long``).
        dropout: dropout of the input embeddings and inside the transformer.
    """

    def __init__(self, input_dim, hidden_size=64, n_layers=2, n_heads=2, n_queries=4, max_len=200,
                 dropout=0.1):
        super().__init__()
        self._check_config(input_dim, hidden_size, n_layers, n_heads, n_queries, max_len, dropout)
        self.input_dim = int(input_dim)
        self.hidden_size = int(hidden_size)
        self.n_queries = int(n_queries)
        self.max_len = int(max_len)

        self.input_proj = nn.Linear(self.input_dim, self.hidden_size)
        self.position_embedding = nn.Embedding(self.max_len, self.hidden_size)
        self.input_norm = nn.LayerNorm(self.hidden_size)
        self.input_dropout = nn.Dropout(dropout)
        self.queries = nn.Parameter(torch.empty(self.n_queries, self.hidden_size))  # [M, h]
        layer = nn.TransformerEncoderLayer(
            d_model=self.hidden_size,
            nhead=int(n_heads),
            dim_feedforward=4 * self.hidden_size,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # norm_first leaves the last layer's output un-normalised: add the final LayerNorm.
        # Nested tensors are off: they need norm_first=False and would warn on every build.
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=int(n_layers), norm=nn.LayerNorm(self.hidden_size),
            enable_nested_tensor=False,
        )
        self._init_weights()

    @staticmethod
    def _check_config(input_dim, hidden_size, n_layers, n_heads, n_queries, max_len, dropout):
        _check_positive_int("lightweight input_dim", input_dim, 64)
        _check_positive_int("lightweight_hidden_size", hidden_size, 64)
        _check_positive_int("lightweight_n_layers", n_layers, 2)
        _check_positive_int("lightweight_n_heads", n_heads, 2)
        _check_positive_int("n_coarse_interests (M)", n_queries, 4)
        _check_positive_int("long history max_len", max_len, 200)
        if hidden_size % n_heads:
            raise ConfigError(
                f"lightweight_hidden_size={hidden_size} is not divisible by lightweight_n_heads="
                f"{n_heads}: choose n_heads among the divisors of the hidden size (e.g. 2 or 4 for 64)."
            )
        if not 0 <= dropout < 1:
            raise ConfigError(f"lightweight dropout={dropout} is outside [0, 1): use e.g. 0.1.")

    def _init_weights(self):
        # BERT/SASRec-style small init, so that the queries start near each other but distinct.
        nn.init.normal_(self.queries, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def extra_repr(self):
        return f"input_dim={self.input_dim}, hidden_size={self.hidden_size}, n_queries={self.n_queries}, " \
               f"max_len={self.max_len}"

    def _check_inputs(self, history, mask):
        if history.dim() != 3 or history.shape[-1] != self.input_dim:
            raise ConfigError(
                f"the lightweight recommender expects a history of shape [B, L, {self.input_dim}], got "
                f"{tuple(history.shape)}: its input_dim must equal the codebook embedding size."
            )
        if mask.shape != history.shape[:2]:
            raise ValueError(f"history mask of shape {tuple(mask.shape)} does not match history "
                             f"{tuple(history.shape[:2])}")
        if history.shape[1] > self.max_len:
            raise ConfigError(
                f"long history of length {history.shape[1]} exceeds the lightweight recommender's "
                f"max_len={self.max_len}: raise max_len to at least the long history length."
            )

    def embed_history(self, history, mask):
        """Projected history + recency positions, normalised -> [B, L, h]."""
        positions = recency_positions(mask)  # [B, L]
        # zero the padding: masked keys get weight 0, but 0 * inf/NaN would still leak in.
        history = history.masked_fill(~mask.unsqueeze(-1), 0.0)  # [B, L, input_dim]
        x = self.input_proj(history) + self.position_embedding(positions)  # [B, L, h]
        return self.input_dropout(self.input_norm(x))

    def forward(self, history, mask):
        """Coarse interests.

        Args:
            history: [B, L, input_dim] decoded embeddings of the long history.
            mask: [B, L] bool, True for real items (an all-False row is an empty history).

        Returns:
            [B, M, hidden_size] the states at the query positions.
        """
        mask = mask.bool()
        self._check_inputs(history, mask)
        batch_size, length = mask.shape
        x = self.embed_history(history, mask)  # [B, L, h]
        queries = self.queries.unsqueeze(0).expand(batch_size, -1, -1)  # [B, M, h]
        tokens = torch.cat([x, queries], dim=1)  # [B, L + M, h]
        # key padding mask: True = ignore; the queries are always visible.
        ignore = torch.cat([~mask, mask.new_zeros(batch_size, self.n_queries)], dim=1)  # [B, L + M]
        states = self.encoder(tokens, src_key_padding_mask=ignore)  # [B, L + M, h]
        return states[:, length:]  # [B, M, h]
