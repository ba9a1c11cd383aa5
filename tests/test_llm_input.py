"""Tokens enter the LLM at the scale of its own token embeddings, read from the loaded model."""
import torch

from recbole_hymirec.model.llm import load_causal_lm, token_embedding_rms
from recbole_hymirec.model.llm_input import LLMInputProjection
from recbole_hymirec.model.refiner import LLMRefiner
from tiny_llm import make_tiny_llm


def _tiny_llm_with_token_rms(tmp_path, factor):
    folder = make_tiny_llm(str(tmp_path / "llm"), arch="llama")
    model, _, _ = load_causal_lm(folder)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(factor)
    return model


def test_token_rms_is_read_from_the_model(tmp_path):
    model = _tiny_llm_with_token_rms(tmp_path, 5.0)
    weight = model.get_input_embeddings().weight
    assert token_embedding_rms(model) == torch.sqrt((weight ** 2).mean()).item()


def test_projected_tokens_and_queries_start_at_the_llms_token_scale(tmp_path):
    torch.manual_seed(0)
    model = _tiny_llm_with_token_rms(tmp_path, 5.0)
    token_rms = token_embedding_rms(model)  # ~0.1: the tiny LLM's 0.02 init times 5
    projection = LLMInputProjection(48, 32, token_rms)
    for content_scale in (0.1, 1.0, 30.0):
        tokens = projection(content_scale * torch.randn(64, 10, 48))  # [B, T, D]
        rms = tokens.pow(2).mean(-1).sqrt()  # [B, T]
        assert torch.allclose(rms, torch.full_like(rms, token_rms), rtol=1e-3)
    refiner = LLMRefiner(model, n_interests=64, output_dim=8)
    assert abs(refiner.interest_queries.std().item() / token_rms - 1) < 0.1
