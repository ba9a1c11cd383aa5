"""A tiny random causal LM (Llama, Qwen2 or GPT-2) and its tokenizer, written offline to a folder.

Exercises the real ``from_pretrained`` loading path in well under a second; no hub access. The
tokenizer is character level (each character one token), built with the ``tokenizers`` library.
"""
import os
import string

import torch

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
VOCAB_SIZE = 300  # model rows; the tokenizer uses the first ~100
HIDDEN = 32


def make_tokenizer(with_pad=False):
    """Character-level PreTrainedTokenizerFast with unk/bos/eos (and optionally pad)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIAL_TOKENS + (["<pad>"] if with_pad else [])
    chars = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    kwargs = {"pad_token": "<pad>"} if with_pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", **kwargs)


def make_config(arch="llama", num_layers=2):
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    common = dict(vocab_size=VOCAB_SIZE, bos_token_id=1, eos_token_id=2)
    if arch == "llama":
        return LlamaConfig(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=num_layers,
                           num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=256, **common)
    if arch == "qwen2":
        return Qwen2Config(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=num_layers,
                           num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=256, **common)
    if arch == "gpt2":
        return GPT2Config(n_embd=HIDDEN, n_layer=num_layers, n_head=4, n_positions=256, **common)
    raise ValueError(f"unknown arch {arch!r}: use llama, qwen2 or gpt2")


def make_tiny_llm(folder, arch="llama", num_layers=2, seed=0, with_pad=False):
    """Write a random ``arch`` causal LM + tokenizer to ``folder``; returns the folder path."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(arch, num_layers))
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    make_tokenizer(with_pad).save_pretrained(folder)
    return str(folder)


def make_tiny_bert(folder):
    """A tiny BERT encoder folder: a model that is *not* a causal LM."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, num_hidden_layers=1,
                        num_attention_heads=4, intermediate_size=64)
    BertModel(config).save_pretrained(folder)
    return str(folder)
