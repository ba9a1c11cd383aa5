"""The ``precision`` key: detection of native bf16, bf16 autocast of the LLM (refiner and item
encoder) with fp32 parameters, heads and outputs, the error message and the cache key."""
import os

import pytest
import torch

from conftest import tiny_hymirec_settings
from recbole_hymirec.config import Config
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model import content_encoder as ce
from recbole_hymirec.model import embedding_cache as cache
from recbole_hymirec.model import llm
from recbole_hymirec.model.item_codes import embedding_key_fields, encode_texts
from recbole_hymirec.model.refiner import LLMRefiner
from recbole_hymirec.utils import create_dataset, data_preparation, get_model
from test_refiner import K, OUT_DIM, make_batch
from tiny_llm import make_tiny_llm

TEXTS = ["title: Toy Story. year: 1995.", "title: GoldenEye.", "title: Heat. genres: Crime.",
         "title: Fargo. year: 1996. genres: Crime Drama Thriller."]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return make_tiny_llm(str(tmp_path_factory.mktemp("llm") / "llama"), arch="llama")


def _cpu_with(monkeypatch, flags):
    monkeypatch.setattr(llm, "cpu_flags", lambda: set(flags))


def _cuda_with(monkeypatch, available, bf16):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)


def linear_output_dtypes(backbone, run):
    """dtypes of what every ``nn.Linear`` inside ``backbone`` returned while ``run()`` ran."""
    seen = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
             for m in backbone.modules() if isinstance(m, torch.nn.Linear)]
    try:
        result = run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen, result


# ----------------------------------------------------------------------------- detection

@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16"), ({"avx2", "avx512f"}, "fp32"),
    (set(), "fp32"),
])
def test_auto_on_cpu_follows_the_bf16_flags(monkeypatch, flags, expected):
    _cpu_with(monkeypatch, flags)
    assert llm.native_bf16("cpu") is (expected == "bf16")
    assert llm.resolve_precision("auto", "cpu") == expected
    assert llm.resolve_precision(None, "cpu") == expected  # a config without the key
    assert llm.resolve_precision("fp32", "cpu") == "fp32"
    assert llm.resolve_precision("bf16", "cpu") == "bf16"


@pytest.mark.parametrize("available, bf16, expected", [
    (True, True, "bf16"), (True, False, "fp32"), (False, True, "fp32")])
def test_auto_on_cuda_follows_bf16_support(monkeypatch, available, bf16, expected):
    _cpu_with(monkeypatch, {"avx512_bf16"})  # the CPU's flags do not decide for CUDA
    _cuda_with(monkeypatch, available, bf16)
    assert llm.resolve_precision("auto", "cuda") == expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert llm.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512_bf16"}
    assert llm.cpu_flags(str(tmp_path / "missing")) == set()


def test_weights_are_bf16_on_cuda_only():
    assert llm.llm_dtype("bf16", "cuda") == "bf16"
    assert llm.llm_dtype("bf16", "cpu") == "fp32"  # autocast casts each matmul
    assert llm.llm_dtype("fp32", "cuda") == "fp32"


def test_bad_value_names_the_fix():
    with pytest.raises(ConfigError) as err:
        llm.resolve_precision("fp16", "cpu")
    assert str(err.value) == ("precision='fp16' is not one of ['auto', 'fp32', 'bf16']. "
                              "Fix: --precision=auto (the default).")


# ----------------------------------------------------------------------------- refiner

@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_refiner_backbone_runs_in_the_chosen_precision(tiny_llama, precision, dtype):
    model, _, _ = llm.load_causal_lm(tiny_llama)
    torch.manual_seed(0)
    refiner = LLMRefiner(model, K, OUT_DIM, precision=precision).train()
    batch = make_batch(refiner.hidden_size)
    seen, out = linear_output_dtypes(refiner.backbone, lambda: refiner(*batch))
    assert seen == {dtype}
    assert out.dtype == torch.float32 and torch.isfinite(out).all()  # the head reads fp32
    out.pow(2).mean().backward()
    named = dict(refiner.named_parameters())
    lora = [n for n, p in named.items() if "lora_" in n]
    assert lora and all(named[n].grad is not None for n in lora)
    assert refiner.interest_queries.grad is not None
    assert all(p.dtype == torch.float32 for p in refiner.parameters())


def test_refiner_bf16_stays_close_to_fp32(tiny_llama):
    outputs = {}
    for precision in ("fp32", "bf16"):
        model, _, _ = llm.load_causal_lm(tiny_llama)
        torch.manual_seed(0)
        refiner = LLMRefiner(model, K, OUT_DIM, precision=precision).eval()
        with torch.no_grad():
            outputs[precision] = refiner(*make_batch(refiner.hidden_size))
    assert not torch.equal(outputs["fp32"], outputs["bf16"])  # bf16 really ran
    cos = torch.nn.functional.cosine_similarity(outputs["fp32"], outputs["bf16"], dim=-1)
    assert cos.min() > 0.98


def test_refiner_refuses_an_unresolved_precision(tiny_llama):
    model, _, _ = llm.load_causal_lm(tiny_llama)
    with pytest.raises(ConfigError, match="resolve 'auto' first"):
        LLMRefiner(model, K, OUT_DIM, precision="auto")


# ----------------------------------------------------------------------------- item encoder

def test_encoder_bf16_runs_the_backbone_in_bf16_and_returns_fp32(tiny_llama):
    model, tokenizer, _ = llm.load_causal_lm(tiny_llama)
    embeddings = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        encoder = ce.ContentEncoder(model, tokenizer, batch_size=2, precision=precision)
        seen, embeddings[precision] = linear_output_dtypes(
            encoder.backbone, lambda: encoder.encode(TEXTS, show_progress=False))
        assert seen == {dtype}
        assert embeddings[precision].dtype == torch.float32
    fp32, bf16 = embeddings["fp32"], embeddings["bf16"]
    assert not torch.equal(fp32, bf16)
    centred = torch.nn.functional.cosine_similarity(fp32 - fp32.mean(0), bf16 - fp32.mean(0))
    assert centred.min() > 0.98


def _key_config(llm_path, precision):
    return {"llm_path": llm_path, "precision": precision, "device": torch.device("cpu"),
            "item_text_fields": ["movie_title"], "item_text_template": None,
            "special_token_init": None, "max_text_len": 48, "dataset": "toy"}


def test_embedding_cache_key_differs_between_fp32_and_bf16(tiny_llama, monkeypatch):
    _cpu_with(monkeypatch, {"avx2"})  # auto = fp32 here
    keys = {p: embedding_key_fields(_key_config(tiny_llama, p), ["[PAD]", "1"], TEXTS[:2])
            for p in ("fp32", "bf16", "auto")}
    assert (keys["fp32"]["dtype"], keys["bf16"]["dtype"]) == ("float32", "bfloat16")
    assert cache.embedding_cache_key(keys["fp32"]) != cache.embedding_cache_key(keys["bf16"])
    assert keys["auto"] == keys["fp32"]
    _cpu_with(monkeypatch, {"avx512_bf16"})
    auto = embedding_key_fields(_key_config(tiny_llama, "auto"), ["[PAD]", "1"], TEXTS[:2])
    assert auto == keys["bf16"]


def test_encode_texts_follows_the_precision_key(tiny_llama):
    config = dict(_key_config(tiny_llama, "bf16"), encoder_batch_size=2, show_progress=False)
    seen = set()
    original = ce.ContentEncoder.forward

    def recording_forward(self, *args):
        seen.add(torch.is_autocast_enabled("cpu"))
        return original(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ce.ContentEncoder, "forward", recording_forward)
        emb = encode_texts(config, TEXTS)
        assert seen == {True}
        seen.clear()
        encode_texts(dict(config, precision="fp32"), TEXTS)
        assert seen == {False}
    assert emb.shape == (len(TEXTS), 32) and emb.dtype == torch.float32


# ----------------------------------------------------------------------------- the model

def _build(assets, **overrides):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny",
                    config_dict=tiny_hymirec_settings(data_path, llm_path, **overrides))
    train, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return get_model("HyMiRec")(config, train._dataset), train


def test_bf16_model_trains_a_step_with_fp32_parameters(assets):
    model, train = _build(assets, precision="bf16")
    assert model.llm_precision == "bf16" and model.refiner.precision == "bf16"
    model.train()
    batch = next(iter(train))
    seen, loss = linear_output_dtypes(model.refiner.backbone,
                                      lambda: sum(model.calculate_loss(batch)))
    assert seen == {torch.bfloat16}
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    named = dict(model.named_parameters())
    lora = [n for n in named if "lora_" in n]
    assert lora and all(named[n].grad is not None for n in lora)
    # lora_B starts at zero, so only its gradient is non-zero on the first step
    assert all(named[n].grad.abs().sum() > 0 for n in lora if "lora_B" in n)
    assert named["refiner.interest_queries"].grad.abs().sum() > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.full_sort_predict(batch).dtype == torch.float32


def test_model_refuses_a_bad_precision(assets):
    with pytest.raises(ConfigError) as err:
        _build(assets, precision="fp16")
    assert str(err.value) == ("precision='fp16' is not one of ['auto', 'fp32', 'bf16']. "
                              "Fix: --precision=auto (the default).")
