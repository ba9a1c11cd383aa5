"""Inference over long sequences in row chunks of bounded size.

A batch of 256 rows of 1,000 tokens makes intermediate tensors of hundreds of MiB (a
feed-forward layer's ``[B, T, 4h]``). On a CPU each such tensor is freshly mapped memory,
paid for in page faults, and falls out of every cache: the same rows in chunks of about
8k tokens run about twice as fast per row. Rows are independent at inference, so the
chunked result is the batched one. With gradients on (training) nothing is chunked: the
graph would keep every chunk's tensors anyway.

Pure torch, no RecBole import.
"""
import torch

# tokens per chunk (rows x tokens per row): big enough that short rows are never split
INFERENCE_CHUNK_TOKENS = 8192


def chunk_rows(tokens_per_row, max_tokens=None):
    """Rows per chunk: as many as fit ``max_tokens`` (default ``INFERENCE_CHUNK_TOKENS``), at
    least one."""
    max_tokens = INFERENCE_CHUNK_TOKENS if max_tokens is None else max_tokens
    return max(1, max_tokens // max(int(tokens_per_row), 1))


def forward_in_row_chunks(forward, tensors, tokens_per_row, max_tokens=None):
    """``forward(*tensors)``, computed on consecutive row chunks of at most ``max_tokens``
    tokens (default ``INFERENCE_CHUNK_TOKENS``) when gradients are off; the outputs (a tensor,
    or a tuple of tensors or None) are joined along the rows."""
    rows = tensors[0].shape[0]
    step = chunk_rows(tokens_per_row, max_tokens)
    if torch.is_grad_enabled() or rows <= step:
        return forward(*tensors)
    parts = [forward(*(t[start:start + step] for t in tensors)) for start in range(0, rows, step)]
    if isinstance(parts[0], tuple):
        return tuple(None if pieces[0] is None else torch.cat(pieces)
                     for pieces in zip(*parts))
    return torch.cat(parts)
