"""Stage 1 for one dataset: item text -> content LLM embeddings (cached) -> centred -> codebook codes.

Used by the HyMiRec model (its frozen item side) and by ``python -m recbole_hymirec.tools.stage1``.
Row ``i`` of every table is RecBole's internal item id ``i``; row 0 is the padding item
(zero embedding, codes of the zero vector, never scored).
"""
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field

import torch

from recbole_hymirec.data.item_text import item_texts
from recbole_hymirec.distributed import rank_zero_first
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.centring import center_embeddings, variance_shares, whiten
from recbole_hymirec.model.codebook import CosineResidualCodebook
from recbole_hymirec.model.content_encoder import ContentEncoder
from recbole_hymirec.model.embedding_cache import cached_item_embeddings
from recbole_hymirec.model.encoder_finetune import finetune_encoder, next_item_pairs
from recbole_hymirec.model.llm import (cache_root, llm_dtype, llm_identity, load_causal_lm,
                                       resolve_llm_path, resolve_precision)

logger = logging.getLogger(__name__)
POOLING = "last-state-at-appended-special-token"


@dataclass
class ItemCodes:
    """Stage-1 output for a dataset's items (row = RecBole item id, row 0 = padding)."""

    embeddings: torch.Tensor  # [n_items, D] centred content embeddings (the codebook's space)
    codebook: CosineResidualCodebook
    codes: torch.Tensor  # [n_items, L] integer codes of every item
    tower_input: torch.Tensor = None  # [n_items, D] the item tower's input: whitened or ``embeddings``
    stats: dict = field(default_factory=dict)


def _sha(values):
    return hashlib.sha256(json.dumps(values, ensure_ascii=False).encode("utf-8")).hexdigest()


def embedding_cache_dir(config):
    return config["embedding_cache_dir"] or os.path.join(cache_root(), "embeddings")


def encoder_precision(config):
    """``bf16`` or ``fp32``: the ``precision`` key resolved on the encoder's device."""
    return resolve_precision(config["precision"], config["device"])


def _encoder_dtype(config):
    """The compute dtype of the embeddings, for their cache key (bf16 autocast or bf16
    weights both round the matmuls to bf16)."""
    return "bfloat16" if encoder_precision(config) == "bf16" else "float32"


def finetune_pairs(config, dataset):
    """Training (item, next item) pairs when stage-1 fine-tuning is on, else None."""
    if not config["encoder_finetune_epochs"]:
        return None
    history = getattr(dataset, "user_history", None)
    if history is None:
        raise ConfigError("encoder_finetune_epochs > 0 needs the built HyMiRecDataset (its "
                          "training sequences). Fix: build stage 1 through the HyMiRec model or "
                          "`python -m recbole_hymirec.tools.stage1`.")
    return next_item_pairs(history)


def _finetune_key(config, pairs):
    if pairs is None:
        return None
    return {"epochs": config["encoder_finetune_epochs"], "lr": config["encoder_finetune_lr"],
            "batch_size": config["encoder_batch_size"], "lora_r": config["lora_r"] or 8,
            "lora_alpha": config["lora_alpha"], "targets": list(config["lora_target_modules"]),
            "seed": config["seed"], "pairs_sha": _sha(pairs.tolist())}


def embedding_key_fields(config, item_tokens, texts, pairs=None):
    """Everything the raw item embeddings depend on: any change rebuilds the cache."""
    return {
        "finetune": _finetune_key(config, pairs),
        "llm": llm_identity(resolve_llm_path(config["llm_path"])),
        "dtype": _encoder_dtype(config),
        "text_fields": list(config["item_text_fields"]),
        "template": config["item_text_template"],
        "pooling": POOLING,
        "special_token_init": config["special_token_init"],
        "max_text_len": config["max_text_len"],
        "dataset": config["dataset"],
        "item_tokens_sha": _sha(list(item_tokens)),
        "texts_sha": _sha(texts),
    }


def encode_texts(config, texts, llm=None, pairs=None):
    """Raw LLM item embeddings ``[n, D]``; ``llm`` = an already loaded (model, tokenizer);
    ``pairs`` = (item, next item) training pairs to fine-tune the encoder on first."""
    precision = encoder_precision(config)
    if llm is None:
        model, tokenizer, _ = load_causal_lm(config["llm_path"],
                                             dtype=llm_dtype(precision, config["device"]),
                                             device=config["device"])
    else:
        model, tokenizer = llm
    encoder = ContentEncoder(model, tokenizer, max_text_len=config["max_text_len"],
                             batch_size=config["encoder_batch_size"],
                             special_token_init=config["special_token_init"],
                             precision=precision)
    if pairs is not None:
        finetune_encoder(encoder, texts, pairs, epochs=config["encoder_finetune_epochs"],
                         batch_size=config["encoder_batch_size"],
                         learning_rate=config["encoder_finetune_lr"], lora_r=config["lora_r"] or 8,
                         lora_alpha=config["lora_alpha"],
                         lora_target_modules=config["lora_target_modules"],
                         seed=config["seed"], show_progress=config["show_progress"])
    return encoder.encode(texts, show_progress=config["show_progress"])


def postprocess(raw):
    """``(centred [n_items, D], mean [D])``: ``raw`` centred on the real items (row 0 is
    padding, set to 0), in place: a second [n_items, D] table would double stage 1's memory."""
    mean = raw[1:].float().mean(dim=0)  # [D]
    raw[1:] -= mean.to(raw.dtype)
    raw[0] = 0
    return raw, mean


def fit_codebook(config, embeddings):
    """Fit on the base pool (default: the dataset's real items), encode every item."""
    codebook = CosineResidualCodebook(
        n_layers=config["codebook_layers"], codebook_size=config["codebook_size"],
        max_cluster_share=config["codebook_max_share"], n_iters=config["codebook_iters"],
        seed=config["seed"], fit_sample=config["codebook_fit_sample"],
    )
    pool_file = config["codebook_pool_file"]
    if pool_file:
        codebook.fit(_load_pool(pool_file, embeddings.shape[1]))
        return codebook, codebook.encode(embeddings)
    codebook.fit(embeddings[1:])  # the real items: their codes are the fit's own
    return codebook, torch.cat([codebook.encode(embeddings[:1]), codebook.codes])  # [n_items, L]


def _load_pool(path, dim):
    if not os.path.isfile(path):
        raise ConfigError(f"codebook_pool_file '{path}' does not exist. Fix: point it to a torch "
                          "file holding a [n, D] tensor of centred item embeddings, or unset it.")
    pool = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(pool, torch.Tensor) or pool.dim() != 2 or pool.shape[1] != dim:
        raise ConfigError(f"codebook_pool_file '{path}' must hold a [n, {dim}] tensor "
                          f"(the LLM's hidden size), got {getattr(pool, 'shape', type(pool))}.")
    return pool.float()


def raw_content_embeddings(config, dataset, llm=None):
    """``(raw embeddings [n_items, D], cache_hit)`` of every item, from the cache when it is
    valid (row 0 = padding)."""
    tokens, texts = item_texts(config, dataset)
    pairs = finetune_pairs(config, dataset)
    with rank_zero_first():  # several ranks: rank 0 fills the cache, the others read it
        return cached_item_embeddings(
            embedding_cache_dir(config), embedding_key_fields(config, tokens, texts, pairs),
            lambda: encode_texts(config, texts, llm, pairs), expected_n=len(tokens),
        )


def content_embeddings(config, dataset, llm=None):
    """``(embeddings [n_items, D], cache_hit)``: centred content embeddings of every item,
    row 0 = padding, from the cache when it is valid."""
    raw, cache_hit = raw_content_embeddings(config, dataset, llm)
    embeddings, _ = postprocess(raw)
    return embeddings, cache_hit


def new_item_inputs(config, dataset, texts):
    """``(content [n, D], tower input [n, D])`` of items outside ``dataset``, from their texts:
    embedded by the same encoder, centred (and whitened) with the catalogue's statistics, so
    that they live in the space the codebook and the item tower were fitted on."""
    if config["encoder_finetune_epochs"]:
        raise ConfigError("new items need the fine-tuned item encoder, which checkpoints do not "
                          "hold (encoder_finetune_epochs > 0). Fix: add the items to the "
                          "dataset's .item file and retrain.")
    catalogue, mean = postprocess(raw_content_embeddings(config, dataset)[0])
    content, _ = center_embeddings(encode_texts(config, texts), mean)  # [n, D]
    if not config["whiten_embeddings"]:
        return content, content
    _, white_mean, transform = whiten(catalogue[1:])
    return content, (content - white_mean) @ transform


def item_tower_input(config, embeddings):
    """The item tower's input ``[n_items, D]``: with ``whiten_embeddings`` the centred rows
    PCA-whitened (row 0, padding, stays 0), else ``embeddings`` itself. Only the tower reads
    it: whitening gives noise directions unit variance, which would cost the codebook and the
    user side (they read the centred rows) much of their reconstruction."""
    if not config["whiten_embeddings"]:
        return embeddings
    whitened = torch.zeros_like(embeddings)
    whitened[1:], _, _ = whiten(embeddings[1:])
    return whitened


def build_item_codes(config, dataset, llm=None):
    """Stage 1 for ``dataset``: cached content embeddings, centring, codebook, stats."""
    start = time.time()
    embeddings, cache_hit = content_embeddings(config, dataset, llm)
    embed_seconds = time.time() - start
    start = time.time()
    codebook, codes = fit_codebook(config, embeddings)
    codebook_seconds = time.time() - start

    stats = codebook.stats(embeddings[1:], codes[1:])
    stats.update(variance_shares(embeddings[1:]))  # of the embeddings the model uses
    stats.update(llm=str(config["llm_path"] or "smollm2 (packaged)"), cache_hit=cache_hit,
                 embed_seconds=round(embed_seconds, 3),
                 codebook_seconds=round(codebook_seconds, 3))
    logger.info("stage 1: %s", json.dumps(stats))
    return ItemCodes(embeddings=embeddings, codebook=codebook, codes=codes,
                     tower_input=item_tower_input(config, embeddings), stats=stats)
