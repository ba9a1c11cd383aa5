"""A tiny random causal LM (Llama, Qwen2 or GPT-2) and its tokenizer, written offline to a folder.

Exercises the real ``from_pretrained`` loading path in well under a second; no hub access. The
tokenizer is character level (each character one token), built with the ``tokenizers`` library.
"""
from recbole_hymirec.tools.smoke_assets import (HIDDEN, VOCAB_SIZE, tiny_llama_config,
                                               write_tiny_llm)


def make_config(arch="llama", num_layers=2):
    from transformers import GPT2Config, Qwen2Config

    common = dict(vocab_size=VOCAB_SIZE, bos_token_id=1, eos_token_id=2)
    if arch == "llama":
        return tiny_llama_config(num_layers, max_positions=256)
    if arch == "qwen2":
        return Qwen2Config(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=num_layers,
                           num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=256, **common)
    if arch == "gpt2":
        return GPT2Config(n_embd=HIDDEN, n_layer=num_layers, n_head=4, n_positions=256, **common)
    raise ValueError(f"unknown arch {arch!r}: use llama, qwen2 or gpt2")


def make_tiny_llm(folder, arch="llama", num_layers=2, seed=0, with_pad=False):
    """Write a random ``arch`` causal LM + tokenizer to ``folder``; returns the folder path."""
    return write_tiny_llm(folder, make_config(arch, num_layers), seed, with_pad)


def make_tiny_bert(folder):
    """A tiny BERT encoder folder: a model that is *not* a causal LM."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, num_hidden_layers=1,
                        num_attention_heads=4, intermediate_size=64)
    BertModel(config).save_pretrained(folder)
    return str(folder)
