# -*- coding: utf-8 -*-
"""Learnable embeddings of an item's codebook codes (HyMiRec's ``history_ids``).

The long history is fetched as ``L`` small integer codes per item. Decoding them gives the
item's content; this module gives the same codes a trainable vector each (one table per
codebook layer, summed over the layers), so the lightweight recommender can also learn
collaborative signal from the long history while it is still fetched as codes only. With a
few layers the codes are nearly unique per item, so the sum acts as a compressed ID embedding.

The table starts at zero: the branch starts as the content model and the codes learn a
residual, as the item tower's ID embedding does.

Pure torch, no RecBole import.
"""
import torch
from torch import nn


class CodeEmbedding(nn.Module):
    """``sum_l E_l[code_l]`` for codes ``[..., L]`` -> ``[..., dim]``.

    Args:
        n_layers: ``L``, codebook layers (columns of a code row).
        codebook_size: ``C``, codewords per layer.
        dim: size of the embeddings.
    """

    def __init__(self, n_layers, codebook_size, dim):
        super().__init__()
        self.n_layers = int(n_layers)
        self.codebook_size = int(codebook_size)
        self.table = nn.Embedding(self.n_layers * self.codebook_size, int(dim))  # [L * C, dim]
        nn.init.zeros_(self.table.weight)
        # row of codeword c of layer l in the flat table = l * C + c
        self.register_buffer("layer_offsets", torch.arange(self.n_layers) * self.codebook_size,
                             persistent=False)  # [L]

    def extra_repr(self):
        return f"n_layers={self.n_layers}, codebook_size={self.codebook_size}"

    def forward(self, codes):
        if codes.shape[-1] != self.n_layers:
            raise ValueError(f"codes have {codes.shape[-1]} columns, the code embedding "
                             f"{self.n_layers} layers: build it with the codebook's layer count.")
        rows = codes.long() + self.layer_offsets  # [..., L]; uint8 would index as a mask
        return self.table(rows).sum(dim=-2)  # [..., dim]
