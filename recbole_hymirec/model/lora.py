"""LoRA adapters (peft) on an LLM backbone, shared by the refiner and the encoder fine-tuning.

Adapters are injected in place, so the backbone stays a plain transformers module; only the
adapter weights are left trainable.
"""
import torch
from torch import nn

from recbole_hymirec.errors import ConfigError

LORA_PARAM_MARKER = "lora_"  # peft names adapter weights ``...lora_A.default.weight`` etc.


def as_module_list(target_modules):
    """``"q_proj,v_proj"`` / ``"c_attn"`` / ``["q_proj", "v_proj"]`` -> list of names."""
    if isinstance(target_modules, str):
        names = [t.strip() for t in target_modules.strip("[]").split(",")]
        return [t.strip("'\" ") for t in names if t.strip("'\" ")]
    return [str(t) for t in target_modules]


def _adaptable_layers(backbone):
    """``{full name: module}`` of the Linear / GPT-2 Conv1D layers LoRA can wrap.

    Layers peft already wrapped are listed under their own name (not ``...base_layer``), and the
    adapters themselves are left out.
    """
    from transformers.pytorch_utils import Conv1D

    layers = {}
    for name, module in backbone.named_modules():
        if not name or not isinstance(module, (nn.Linear, Conv1D)):
            continue
        parts = name.split(".")
        if any(part.startswith(LORA_PARAM_MARKER) for part in parts):
            continue
        if parts[-1] == "base_layer":
            name = ".".join(parts[:-1])
        layers[name] = module
    return layers


def _matches(name, target):
    return name == target or name.endswith("." + target)


def _suggest_targets(leaf_names):
    """The usual attention projections among ``leaf_names`` (what LoRA papers tune)."""
    for pair in (("q_proj", "v_proj"), ("c_attn",), ("query_key_value",), ("Wqkv",)):
        if all(p in leaf_names for p in pair):
            return list(pair)
    attention = [n for n in leaf_names if "attn" in n or n.startswith(("q", "k", "v"))]
    return attention or leaf_names[:1]


def _check_targets(backbone, target_modules):
    """The matched layers; ConfigError listing what exists when nothing matches."""
    layers = _adaptable_layers(backbone)
    matched = {n: m for n, m in layers.items() if any(_matches(n, t) for t in target_modules)}
    if matched:
        return matched
    leaf_names = sorted({n.rsplit(".", 1)[-1] for n in layers})
    model_type = getattr(backbone.config, "model_type", type(backbone).__name__)
    suggestion = str(_suggest_targets(leaf_names))
    raise ConfigError(
        f"lora_target_modules={list(target_modules)} match no layer of the LLM "
        f"(model_type={model_type}). Its layers that LoRA can adapt are {leaf_names}. "
        f"Fix: --lora_target_modules=\"{suggestion}\" (or lora_r=0 to freeze the LLM)."
    )


def inject_lora(backbone, r, alpha, dropout, target_modules):
    """Add LoRA adapters to ``backbone`` in place; only they stay trainable (kept in fp32)."""
    from peft import LoraConfig, inject_adapter_in_model
    from transformers.pytorch_utils import Conv1D

    matched = _check_targets(backbone, target_modules)
    # GPT-2's Conv1D stores its weight transposed: tell peft instead of letting it warn.
    fan_in_fan_out = any(isinstance(m, Conv1D) for m in matched.values())
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(target_modules), bias="none",
                        fan_in_fan_out=fan_in_fan_out)
    backbone = inject_adapter_in_model(config, backbone)
    for name, param in backbone.named_parameters():
        is_lora = LORA_PARAM_MARKER in name
        param.requires_grad_(is_lora)
        if is_lora and param.dtype != torch.float32:
            # A bf16 backbone gives bf16 adapters; optimiser updates need fp32 weights.
            param.data = param.data.float()
    return backbone
