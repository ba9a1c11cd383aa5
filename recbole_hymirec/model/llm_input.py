"""Projection of item and coarse-interest vectors into the LLM's input space.

A pre-trained LLM expects ``inputs_embeds`` at the scale of its own token embeddings (SmolLM2:
RMS about 0.13 per dimension). A fresh ``nn.Linear`` from content embeddings gives tokens of
RMS about 0.6, so the first layers would see inputs several times louder than anything they
were trained on. Each projected token is RMS-normalised with a learnable gain that starts at
the loaded LLM's token-embedding RMS, read from the model.
"""
from torch import nn


class LLMInputProjection(nn.Module):
    """``RMSNorm(Linear(x))`` with the norm's gain starting at ``token_rms``: ``[..., in] ->
    [..., D]`` tokens at the LLM's own input scale."""

    def __init__(self, input_size, llm_size, token_rms):
        super().__init__()
        self.linear = nn.Linear(input_size, llm_size)
        self.norm = nn.RMSNorm(llm_size, eps=1e-6)
        nn.init.constant_(self.norm.weight, float(token_rms))

    def forward(self, x):
        return self.norm(self.linear(x))  # [..., D]
