"""LLM refiner: shapes on Llama/Qwen2/GPT-2, padding invariance, LoRA-only training, errors."""
import pytest
import torch

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.llm import load_causal_lm
from recbole_hymirec.model.refiner import LLMRefiner
from tiny_llm import make_tiny_llm

K, OUT_DIM, M, N = 3, 8, 2, 5
TARGETS = {"llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "gpt2": ["c_attn"]}


@pytest.fixture(scope="module")
def llm_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    return {arch: make_tiny_llm(str(root / arch), arch=arch) for arch in TARGETS}


def make_refiner(folder, arch="llama", seed=0, **kwargs):
    """A fresh refiner on a freshly loaded model (LoRA injection modifies the model in place)."""
    model, _, _ = load_causal_lm(folder)
    torch.manual_seed(seed)
    kwargs.setdefault("lora_target_modules", TARGETS[arch])
    return LLMRefiner(model, n_interests=K, output_dim=OUT_DIM, **kwargs)


def make_batch(dim, seed=1):
    """3 rows: a partly padded (non-contiguous) window, a full one, an empty one."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(3, M, dim, generator=gen)
    recent = torch.randn(3, N, dim, generator=gen)
    coarse_mask = torch.tensor([[1, 1], [1, 1], [1, 0]], dtype=torch.bool)
    recent_mask = torch.tensor([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]],
                               dtype=torch.bool)
    return coarse, coarse_mask, recent, recent_mask


@pytest.mark.parametrize("arch", list(TARGETS))
def test_output_shape_per_architecture(llm_folders, arch):
    refiner = make_refiner(llm_folders[arch], arch).eval()
    out = refiner(*make_batch(refiner.hidden_size))
    assert out.shape == (3, K, OUT_DIM)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Only the base decoder is kept: no vocabulary projection in the module.
    assert not any("lm_head" in name for name, _ in refiner.named_parameters())


@pytest.mark.parametrize("arch", list(TARGETS))
def test_padded_positions_do_not_matter(llm_folders, arch):
    refiner = make_refiner(llm_folders[arch], arch).eval()
    coarse, coarse_mask, recent, recent_mask = make_batch(refiner.hidden_size)
    with torch.no_grad():
        out = refiner(coarse, coarse_mask, recent, recent_mask)
        coarse2, recent2 = coarse.clone(), recent.clone()
        coarse2[~coarse_mask] = 50.0
        recent2[~recent_mask] = torch.randn_like(recent2[~recent_mask]) * 10
        out2 = refiner(coarse2, coarse_mask, recent2, recent_mask)
    assert torch.allclose(out, out2, atol=1e-5)


@pytest.mark.parametrize("arch", list(TARGETS))
def test_row_alone_equals_row_in_batch(llm_folders, arch):
    refiner = make_refiner(llm_folders[arch], arch).eval()
    coarse, coarse_mask, recent, recent_mask = make_batch(refiner.hidden_size)
    with torch.no_grad():
        batched = refiner(coarse, coarse_mask, recent, recent_mask)  # row 1 is the longest
        for row in (0, 2):
            alone = refiner(coarse[row:row + 1], coarse_mask[row:row + 1],
                            recent[row:row + 1], recent_mask[row:row + 1])
            assert torch.allclose(alone[0], batched[row], atol=1e-5), row


def test_queries_see_real_tokens(llm_folders):
    refiner = make_refiner(llm_folders["llama"]).eval()
    coarse, coarse_mask, recent, recent_mask = make_batch(refiner.hidden_size)
    with torch.no_grad():
        out = refiner(coarse, coarse_mask, recent, recent_mask)
        recent2 = recent.clone()
        recent2[0, 2] += 1.0  # a real item of row 0 (its mask is non-contiguous)
        out2 = refiner(coarse, coarse_mask, recent2, recent_mask)
        coarse2 = coarse.clone()
        coarse2[1, 0] += 1.0  # a real coarse interest of row 1
        out3 = refiner(coarse2, coarse_mask, recent, recent_mask)
    assert not torch.allclose(out[0], out2[0], atol=1e-4)
    assert torch.allclose(out[1:], out2[1:], atol=1e-5)  # other rows untouched
    assert not torch.allclose(out[1], out3[1], atol=1e-4)


def test_rows_without_recent_items(llm_folders):
    refiner = make_refiner(llm_folders["llama"]).eval()
    coarse, coarse_mask, recent, _ = make_batch(refiner.hidden_size)
    empty = torch.zeros(3, N, dtype=torch.bool)
    with torch.no_grad():
        out = refiner(coarse, coarse_mask, recent, empty)
        only_queries = refiner(coarse, torch.zeros_like(coarse_mask), recent, empty)
    assert torch.isfinite(out).all() and torch.isfinite(only_queries).all()
    # Nothing real at all: every row sees only the (shared) queries.
    assert torch.allclose(only_queries[0], only_queries[1], atol=1e-5)


def test_lora_only_training_step(llm_folders):
    refiner = make_refiner(llm_folders["llama"]).train()
    named = dict(refiner.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable == set(refiner.trainable_parameter_names())
    lora_b = [n for n in trainable if "lora_B" in n]
    assert lora_b and all(not named[n].detach().any() for n in lora_b)  # zero-initialised
    backbone = {n for n in named if n.startswith("backbone.")}
    assert {n for n in backbone if n in trainable} == {n for n in backbone if "lora_" in n}
    n_trainable = sum(named[n].numel() for n in trainable if n.startswith("backbone."))
    n_backbone = sum(named[n].numel() for n in backbone)
    assert n_trainable < 0.1 * n_backbone

    before = {n: p.detach().clone() for n, p in named.items()}
    optimizer = torch.optim.Adam([named[n] for n in trainable], lr=1e-2)
    out = refiner(*make_batch(refiner.hidden_size))
    out.pow(2).mean().backward()
    optimizer.step()

    for name in backbone - trainable:
        assert torch.equal(named[name], before[name]), name
        assert named[name].grad is None, name
    for name in lora_b + ["interest_queries", "head.out.weight", "head.mlp.0.weight"]:
        assert not torch.equal(named[name], before[name]), name


def test_lora_r_zero_freezes_backbone(llm_folders):
    refiner = make_refiner(llm_folders["gpt2"], "gpt2", lora_r=0,
                           lora_target_modules=["does_not_matter"])
    assert not any(p.requires_grad for p in refiner.backbone.parameters())
    assert not any("lora_" in n for n, _ in refiner.named_parameters())
    names = refiner.trainable_parameter_names()
    assert "interest_queries" in names and all(not n.startswith("backbone.") for n in names)


def test_target_modules_as_string(llm_folders):
    refiner = make_refiner(llm_folders["gpt2"], "gpt2", lora_target_modules="['c_attn']")
    assert any("c_attn.lora_A" in n for n in refiner.trainable_parameter_names())


def test_wrong_target_modules_message(llm_folders):
    with pytest.raises(ConfigError) as err:
        make_refiner(llm_folders["gpt2"], "gpt2", lora_target_modules=["q_proj", "v_proj"])
    message = str(err.value)
    assert "lora_target_modules=['q_proj', 'v_proj']" in message
    assert "c_attn" in message and "c_fc" in message
    assert "--lora_target_modules=\"['c_attn']\"" in message

    with pytest.raises(ConfigError, match=r"\['q_proj', 'v_proj'\]"):
        make_refiner(llm_folders["llama"], lora_target_modules=["c_attn"])


@pytest.mark.parametrize("kwargs, phrase", [
    ({"n_interests": 0}, "n_interests=0"),
    ({"output_dim": 0}, "output_dim=0"),
    ({"lora_r": -1}, "lora_r=-1"),
])
def test_invalid_arguments(llm_folders, kwargs, phrase):
    model, _, _ = load_causal_lm(llm_folders["llama"])
    args = {"n_interests": K, "output_dim": OUT_DIM, **kwargs}
    with pytest.raises(ConfigError, match=phrase):
        LLMRefiner(model, **args)


def test_loss_goes_down(llm_folders):
    refiner = make_refiner(llm_folders["llama"], lora_dropout=0.0, head_dropout=0.0).train()
    batch = make_batch(refiner.hidden_size)
    target = torch.randn(3, K, OUT_DIM, generator=torch.Generator().manual_seed(7))
    params = [p for p in refiner.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(refiner(*batch), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_window_outputs_read_the_coarse_tokens_before_them(llm_folders):
    refiner = make_refiner(llm_folders["llama"]).eval()
    coarse, coarse_mask, recent, recent_mask = make_batch(refiner.hidden_size)
    with torch.no_grad():
        interests, outputs = refiner.forward_with_recent(coarse, coarse_mask, recent,
                                                         recent_mask, with_recent=True)
        _, moved = refiner.forward_with_recent(coarse + 1.0, coarse_mask, recent,
                                               recent_mask, with_recent=True)
        assert torch.allclose(interests, refiner(coarse, coarse_mask, recent, recent_mask))
    assert outputs.shape == (3, N, OUT_DIM)
    real = recent_mask.unsqueeze(2).expand_as(outputs)
    assert not torch.allclose(outputs[real], moved[real], atol=1e-5)


def test_window_outputs_are_causal_and_come_only_when_asked(llm_folders):
    refiner = make_refiner(llm_folders["llama"]).eval()
    coarse, coarse_mask, recent, recent_mask = make_batch(refiner.hidden_size)
    later = recent.clone()
    later[1, 3:] += 1.0  # row 1 is a full window: tokens 3 and 4 change
    with torch.no_grad():
        assert refiner.forward_with_recent(coarse, coarse_mask, recent, recent_mask)[1] is None
        _, outputs = refiner.forward_with_recent(coarse, coarse_mask, recent, recent_mask, True)
        _, moved = refiner.forward_with_recent(coarse, coarse_mask, later, recent_mask, True)
    assert torch.allclose(outputs[1, :3], moved[1, :3], atol=1e-5)  # earlier tokens: unchanged
    assert not torch.allclose(outputs[1, 3:], moved[1, 3:], atol=1e-5)


def test_inference_in_row_chunks_equals_the_whole_batch(llm_folders, monkeypatch):
    from recbole_hymirec.model import row_chunks

    refiner = make_refiner(llm_folders["llama"]).eval()
    batch = make_batch(refiner.hidden_size)
    with torch.no_grad():
        interests, recent = refiner.forward_with_recent(*batch, with_recent=True)
        monkeypatch.setattr(row_chunks, "INFERENCE_CHUNK_TOKENS", M + N + K)  # one row a chunk
        chunked_interests, chunked_recent = refiner.forward_with_recent(*batch, with_recent=True)
    assert torch.allclose(interests, chunked_interests, atol=1e-5)
    assert torch.allclose(recent, chunked_recent, atol=1e-5)
