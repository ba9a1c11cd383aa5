"""Item embeddings of a whole catalogue stored on disk under a key of everything they depend
on; writes are atomic, and a corrupt or stale file is detected and rebuilt."""
import hashlib
import json
import logging
import os

import torch

from recbole_hymirec.atomic import atomic_open
from recbole_hymirec.model.random_state import random_state_kept

logger = logging.getLogger(__name__)


def embedding_cache_key(key_fields):
    """sha256 of the canonical JSON of everything the embeddings depend on."""
    blob = json.dumps(key_fields, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _checksum(tensor):
    return hashlib.sha256(tensor.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def cache_file_path(cache_dir, key):
    return os.path.join(cache_dir, f"item_emb-{key[:16]}.pt")


def _load_cached(path, key, expected_n=None):
    """The cached tensor, or None (with a warning) when the file is unusable."""
    if not os.path.isfile(path):
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        emb = blob["embeddings"]
        if blob.get("key") != key:
            raise ValueError("it was written for another key")
        if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or emb.shape[0] != blob.get("n"):
            raise ValueError("its shape does not match its item count")
        if expected_n is not None and emb.shape[0] != expected_n:
            raise ValueError(f"it holds {emb.shape[0]} items, {expected_n} expected")
        if _checksum(emb) != blob.get("checksum"):
            raise ValueError("its checksum does not match")
        return emb
    except Exception as err:  # truncated zip, unpickling error, missing entries...
        logger.warning("item embedding cache %s is unusable (%s): rebuilding it", path, err)
        return None


def cached_item_embeddings(cache_dir, key_fields, compute_fn, expected_n=None):
    """Item embeddings from ``<cache_dir>/item_emb-<key[:16]>.pt`` or from ``compute_fn()``.

    Args:
        cache_dir: folder of the cache files (created on demand).
        key_fields: JSON-able dict of everything the embeddings depend on (LLM identity, text
            fields, template, pooling, max text length, item token list...).
        compute_fn: ``() -> FloatTensor[n, D]``, called on a miss.
        expected_n: optional row count the cached tensor must have.

    Returns:
        ``(embeddings [n, D] float32 CPU, cache_hit)``. An unreadable, truncated or stale file is
        logged as a warning and rebuilt; a failed write is logged and the result still returned.
    """
    key = embedding_cache_key(key_fields)
    path = cache_file_path(cache_dir, key)
    emb = _load_cached(path, key, expected_n)
    if emb is not None:
        logger.info("item embedding cache hit: %s (%d x %d)", path, emb.shape[0], emb.shape[1])
        return emb, True
    with random_state_kept():  # a miss must not change what the seed gives later
        emb = compute_fn().detach().float().cpu().contiguous()  # [n, D]
    payload = {"key": key, "key_fields": key_fields, "embeddings": emb, "n": int(emb.shape[0]),
               "checksum": _checksum(emb)}
    try:
        with atomic_open(path) as f:
            torch.save(payload, f)
        logger.info("item embeddings written to %s", path)
    except (OSError, RuntimeError) as err:
        logger.warning("could not write the item embedding cache %s (%s); continuing without it",
                       path, err)
    return emb, False
