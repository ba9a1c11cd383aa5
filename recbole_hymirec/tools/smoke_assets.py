"""What the smoke modes run on instead of the real thing: a tiny random causal LLM (Llama
architecture, character-level tokenizer, written offline to a folder and loaded through the
real ``from_pretrained`` path in well under a second) and a tiny synthetic dataset."""
import os
import string

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
VOCAB_SIZE = 300  # model rows; the tokenizer uses the first ~100
HIDDEN = 32
SMOKE_DATASET = "synth-mi"  # the synthetic generator's name: its dataset properties apply


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


def tiny_llama_config(num_layers=2, max_positions=2048):
    """A Llama config of hidden size 32, 4 heads (2 key/value heads)."""
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=num_layers,
                       num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=max_positions, vocab_size=VOCAB_SIZE,
                       bos_token_id=1, eos_token_id=2)


def write_tiny_llm(folder, config=None, seed=0, with_pad=False):
    """A random causal LM of ``config`` (default: ``tiny_llama_config()``) and the tokenizer
    written to ``folder``; returns the folder."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config or tiny_llama_config())
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    make_tokenizer(with_pad).save_pretrained(folder)
    return str(folder)


def write_tiny_dataset(data_path, seed=2020):
    """A synthetic dataset of 40 users x about 35 items (3 topics of 20 items: more than the
    protocols' largest cut-off, 50) under ``data_path``; run with ``-d synth-mi
    --data_path=DATA_PATH``. Returns its folder."""
    from recbole_hymirec.data.synthetic import SyntheticSpec, write_dataset

    spec = SyntheticSpec(n_users=40, n_topics=3, items_per_topic=20, interests_per_user=(3, 3),
                         cycles=(2, 2), block_length=(6, 8), final_block_length=(8, 10))
    return write_dataset(data_path, SMOKE_DATASET, spec, seed)
