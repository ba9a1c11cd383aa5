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
* Cost at long histories: attention runs through ``scaled_dot_product_attention`` (fused
  kernels that never hold the ``[B, heads, L, L]`` weights; PyTorch's own encoder fast path
  does at inference), the last layer computes the ``M`` query states only, the one output
  read, and inference goes through the rows in chunks of bounded size (row_chunks.py). The
  weights live in a standard ``nn.TransformerEncoder`` (pre-norm, GELU) whose output this
  equals.

Pure torch, no RecBole import.
"""

import torch
import torch.nn as nn
from torch.nn import functional as F

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.row_chunks import forward_in_row_chunks


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
        # padding projects as a zero input would: masked keys get weight 0, but 0 * inf/NaN
        # would still leak in (selected after the projection: no copy of the wide input)
        projected = torch.where(mask.unsqueeze(-1), self.input_proj(history),
                                self.input_proj.bias)  # [B, L, h]
        x = projected + self.position_embedding(positions)  # [B, L, h]
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
        return forward_in_row_chunks(self._coarse_interests, (history, mask),
                                     tokens_per_row=history.shape[1] + self.n_queries)

    def _coarse_interests(self, history, mask):
        """``forward`` on checked inputs ``[B, L, input_dim]``, ``[B, L]`` -> ``[B, M, h]``."""
        batch_size, length = mask.shape
        x = self.embed_history(history, mask)  # [B, L, h]
        queries = self.queries.unsqueeze(0).expand(batch_size, -1, -1)  # [B, M, h]
        tokens = torch.cat([x, queries], dim=1)  # [B, L + M, h]
        # key padding mask: True = ignore; the queries are always visible.
        ignore = torch.cat([~mask, mask.new_zeros(batch_size, self.n_queries)], dim=1)  # [B, L + M]
        visible = ~ignore[:, None, None, :]  # [B, 1, 1, L + M] True = attend
        layers = self.encoder.layers
        for layer in layers[:-1]:
            tokens = self._encoder_layer(layer, tokens, tokens, visible)  # [B, L + M, h]
        queries = self._encoder_layer(layers[-1], tokens[:, length:], tokens, visible)  # [B, M, h]
        return self.encoder.norm(queries)  # [B, M, h]

    def _encoder_layer(self, layer, x, context, visible):
        """One pre-norm ``nn.TransformerEncoderLayer`` for the tokens ``x`` ``[B, Q, h]``, the
        last ``Q`` of ``context`` ``[B, S, h]``, which they attend over -> ``[B, Q, h]``."""
        normed = layer.norm1(context)  # [B, S, h]
        attended = self._attend(layer.self_attn, normed[:, context.shape[1] - x.shape[1]:],
                                normed, visible)  # [B, Q, h]
        x = x + layer.dropout1(attended)
        feed_forward = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x)))))
        return x + layer.dropout2(feed_forward)  # [B, Q, h]

    def _attend(self, attention, x, context, visible):
        """``attention``'s (an ``nn.MultiheadAttention``) heads for ``x`` ``[B, Q, h]`` over
        ``context`` ``[B, S, h]`` with key mask ``visible`` ``[B, 1, 1, S]`` -> ``[B, Q, h]``."""
        heads, width = attention.num_heads, self.hidden_size
        q_weight, kv_weight = attention.in_proj_weight.split([width, 2 * width])
        q_bias, kv_bias = attention.in_proj_bias.split([width, 2 * width])
        q = F.linear(x, q_weight, q_bias).unflatten(-1, (heads, -1)).transpose(1, 2)  # [B, H, Q, h/H]
        k, v = F.linear(context, kv_weight, kv_bias).unflatten(-1, (2, heads, -1)).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B, H, S, h/H] each
        dropout = attention.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, dropout_p=dropout)
        return attention.out_proj(out.transpose(1, 2).flatten(2))  # [B, Q, h]
