"""Inference in row chunks: the same result as the whole batch, in bounded pieces."""
import torch

from recbole_hymirec.model import row_chunks
from recbole_hymirec.model.lightweight import LightweightInterestExtractor
from recbole_hymirec.model.row_chunks import chunk_rows, forward_in_row_chunks


def test_chunk_rows_fit_the_token_budget_and_take_at_least_one_row():
    assert chunk_rows(tokens_per_row=100, max_tokens=1000) == 10
    assert chunk_rows(tokens_per_row=300, max_tokens=1000) == 3
    assert chunk_rows(tokens_per_row=5000, max_tokens=1000) == 1


def test_chunks_are_joined_along_the_rows_and_none_stays_none():
    calls = []

    def forward(x, y):
        calls.append(len(x))
        return x * 2, None, y + 1

    x, y = torch.arange(7.0).unsqueeze(1), torch.arange(7)
    with torch.no_grad():
        doubled, nothing, shifted = forward_in_row_chunks(forward, (x, y), tokens_per_row=10,
                                                          max_tokens=30)
    assert calls == [3, 3, 1]
    assert doubled.squeeze(1).tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert nothing is None and shifted.tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_with_gradients_the_batch_stays_whole():
    calls = []
    x = torch.ones(6, 4, requires_grad=True)
    forward_in_row_chunks(lambda t: calls.append(len(t)) or t.sum(1), (x,), tokens_per_row=4,
                          max_tokens=8)
    assert calls == [6]


def test_lightweight_in_chunks_equals_the_whole_batch(monkeypatch):
    torch.manual_seed(0)
    model = LightweightInterestExtractor(12, 16, 2, 2, 3, 20, 0.1).eval()
    history = torch.randn(5, 9, 12)
    mask = torch.arange(9).unsqueeze(0) < torch.tensor([9, 4, 0, 7, 1]).unsqueeze(1)
    with torch.no_grad():
        whole = model(history, mask)
        monkeypatch.setattr(row_chunks, "INFERENCE_CHUNK_TOKENS", 24)  # 2 rows of 9 + 3 tokens
        chunked = model(history, mask)
    assert torch.allclose(whole, chunked, atol=1e-6)
