"""Content LLM item encoder (HLLM style): ``text + <special token>`` through a causal LLM, the
last-layer state at the special token is the item embedding.

* :func:`read_item_texts` builds one readable text per item from the raw ``.item`` atomic file
  (RecBole keeps only word ids of token_seq fields; the LLM needs the strings).
* :class:`ContentEncoder` runs the backbone on ``inputs_embeds`` with a learnable special-token
  embedding appended after each text (initialised from an existing token, so a frozen encoder
  already gives usable embeddings).
* :func:`cached_item_embeddings` stores the embeddings of a whole catalogue on disk under a key of
  everything they depend on; writes are atomic and a corrupt or stale file is rebuilt.
* :func:`center_embeddings` / :func:`whiten`: raw causal-LM states are anisotropic (cosine ≈ 0.95
  between unrelated titles), so centre them before any cosine use.

``forward`` is differentiable: the optional stage-1 fine-tuning (LoRA + the special token,
next-item contrastive loss) lives in ``encoder_finetune.py``; by default the encoder is frozen.
"""
import csv
import hashlib
import json
import logging
import os
import string

import torch
from torch import nn
from tqdm import tqdm

from recbole_hymirec.atomic import atomic_open
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.llm import backbone_of, hidden_size_of, llm_autocast
from recbole_hymirec.model.random_state import random_state_kept

logger = logging.getLogger(__name__)

UNKNOWN_ITEM_TEXT = "unknown item"
# Readable labels for the usual RecBole field names; any other field is labelled by its name.
FIELD_LABELS = {
    "movie_title": "title",
    "title": "title",
    "item_name": "title",
    "name": "title",
    "release_year": "year",
    "year": "year",
    "class": "genres",
    "genre": "genres",
    "genres": "genres",
    "categories": "categories",
    "brand": "brand",
    "description": "description",
}


# ----------------------------------------------------------------------------- item texts

def _field_name(header_entry):
    """``movie_title:token_seq`` -> ``movie_title``."""
    return header_entry.split(":", 1)[0].strip()


def _format_value(value):
    """Strip, and print integral floats without the ``.0`` pandas/RecBole give them (1995.0)."""
    value = str(value).strip()
    try:
        number = float(value)
    except ValueError:
        return value
    if number.is_integer() and abs(number) < 1e15 and any(c in value for c in ".eE"):
        return str(int(number))
    return value


def _default_text(values, text_fields):
    parts = []
    for field in text_fields:
        value = values.get(field, "")
        if not value:
            continue
        label = FIELD_LABELS.get(field.lower(), field.replace("_", " "))
        end = "" if value.endswith((".", "!", "?")) else "."
        parts.append(f"{label}: {value}{end}")
    return " ".join(parts)


def _check_template(template, text_fields):
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    unknown = sorted(names - set(text_fields))
    if unknown:
        raise ConfigError(
            f"item_text_template uses {unknown}, which are not in item_text_fields "
            f"{list(text_fields)}. "
            "Fix: add them to item_text_fields or remove them from the template."
        )


def read_item_texts(dataset_dir, dataset_name, item_tokens, text_fields, template=None,
                    item_id_field="item_id", field_separator="\t", encoding="utf-8"):
    """One text per entry of ``item_tokens`` built from ``<dataset_dir>/<dataset_name>.item``.

    Args:
        dataset_dir: folder holding the atomic files (RecBole's ``config['data_path']``).
        dataset_name: the dataset name (file stem).
        item_tokens: item id tokens in RecBole's internal order
            (``dataset.field2id_token['item_id']``, index 0 is ``'[PAD]'``).
        text_fields: ``.item`` fields to put in the text, in order (``name`` or ``name:type``).
        template: optional ``str.format`` template over ``text_fields``, e.g.
            ``"{movie_title} ({release_year})"``; default: ``"title: Toy Story. year: 1995. ..."``.

    Returns:
        list of ``len(item_tokens)`` strings; items without a row (and ``[PAD]``) get
        ``"unknown item"``.
    """
    import pandas as pd

    text_fields = [_field_name(f) for f in text_fields]
    if not text_fields:
        raise ConfigError(
            "item_text_fields is empty. Fix: name the .item fields to encode, e.g. [movie_title]."
        )
    path = os.path.join(dataset_dir, f"{dataset_name}.item")
    if not os.path.isfile(path):
        raise ConfigError(
            f"The item text fields {text_fields} need the item file {path}, which does not exist. "
            f"Fix: put {dataset_name}.item (RecBole atomic format) in {dataset_dir}, "
            "or check data_path and dataset."
        )
    # Everything as raw strings: no NaN, no quote handling (titles may contain quotes).
    frame = pd.read_csv(path, sep=field_separator, dtype=str, keep_default_na=False,
                        quoting=csv.QUOTE_NONE, encoding=encoding, encoding_errors="replace")
    frame = frame.fillna("")  # short rows leave NaN even with keep_default_na=False
    frame.columns = [_field_name(c) for c in frame.columns]
    missing = [f for f in [item_id_field] + text_fields if f not in frame.columns]
    if missing:
        raise ConfigError(
            f"Field(s) {missing} are not in {path}; available fields: {list(frame.columns)}. "
            "Fix: set item_text_fields to some of the available fields."
        )
    if template is not None:
        _check_template(template, text_fields)

    texts = {}
    for row in frame[[item_id_field] + text_fields].itertuples(index=False, name=None):
        token = str(row[0]).strip()
        if token in texts:  # RecBole keeps the first row of a duplicated id as well
            continue
        values = {f: _format_value(v) for f, v in zip(text_fields, row[1:])}
        if template is not None:
            text = template.format(**values)
        else:
            text = _default_text(values, text_fields)
        texts[token] = text.strip() or UNKNOWN_ITEM_TEXT
    return [texts.get(str(token), UNKNOWN_ITEM_TEXT) for token in item_tokens]


# ----------------------------------------------------------------------------- encoder

class ContentEncoder(nn.Module):
    """``text + <special token>`` through a causal LLM; item embedding = last-layer state at the
    special token.

    Args:
        model: a causal LM (or its backbone) from :func:`recbole_hymirec.model.llm.load_causal_lm`.
        tokenizer: its tokenizer.
        max_text_len: text tokens kept per item (the special token comes on top).
        batch_size: items per forward in :meth:`encode`.
        special_token_init: token whose input embedding initialises the special token:
            ``None`` = the eos token, a token string (several pieces: their mean) or a token id.
        freeze_backbone: keep the LLM weights fixed (stage-1 fine-tuning is not implemented).
        precision: ``bf16`` runs :meth:`encode` under bf16 autocast, ``fp32`` without it (as
            resolved by :func:`recbole_hymirec.model.llm.resolve_precision`).
    """

    def __init__(self, model, tokenizer, max_text_len=64, batch_size=32, special_token_init=None,
                 freeze_backbone=True, precision="fp32"):
        super().__init__()
        self.precision = precision
        self.backbone = backbone_of(model)
        self.tokenizer = tokenizer
        self.max_text_len = int(max_text_len)
        self.batch_size = int(batch_size)
        self.hidden_size = hidden_size_of(self.backbone.config)
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        pad_id = tokenizer.pad_token_id
        self.pad_token_id = pad_id if pad_id is not None else tokenizer.eos_token_id
        if self.pad_token_id is None:
            raise ConfigError(
                "The LLM tokenizer has neither a pad nor an eos token. Fix: set pad_token."
            )
        init = self._initial_special_embedding(special_token_init)  # [D]
        self.special_token = nn.Parameter(init.detach().clone().float())

    def _initial_special_embedding(self, special_token_init):
        table = self.backbone.get_input_embeddings().weight  # [V, D]
        if special_token_init is None:
            eos = self.tokenizer.eos_token_id
            ids = [eos if eos is not None else self.pad_token_id]
        elif isinstance(special_token_init, int):
            ids = [special_token_init]
        else:
            ids = self.tokenizer(str(special_token_init), add_special_tokens=False)["input_ids"]
        if not ids or not all(0 <= i < table.shape[0] for i in ids):
            raise ConfigError(
                f"special_token_init={special_token_init!r} is not a token of the LLM vocabulary. "
                "Fix: use an existing token (e.g. the eos token) or leave it unset."
            )
        with torch.no_grad():
            return table[torch.tensor(ids, device=table.device)].float().mean(0)  # [D]

    @property
    def device(self):
        return self.special_token.device

    def tokenize(self, texts):
        """Right-padded text ids ``[B, T]`` and text lengths ``[B]`` (no special token yet)."""
        pieces = self.tokenizer(list(texts), add_special_tokens=True, truncation=True,
                                max_length=self.max_text_len)["input_ids"]
        lengths = torch.tensor([len(p) for p in pieces], dtype=torch.long)  # [B]
        width = max(int(lengths.max()) if len(pieces) else 0, 1)
        input_ids = torch.full((len(pieces), width), self.pad_token_id, dtype=torch.long)  # [B, T]
        for row, piece in enumerate(pieces):
            input_ids[row, : len(piece)] = torch.tensor(piece, dtype=torch.long)
        return input_ids, lengths

    def forward(self, input_ids, lengths):
        """Item embeddings ``[B, D]`` from right-padded ``input_ids [B, T]``, ``lengths [B]``."""
        input_ids, lengths = input_ids.to(self.device), lengths.to(self.device)
        batch, width = input_ids.shape
        rows = torch.arange(batch, device=self.device)
        # One extra column so the longest text still has room for the special token.
        pad_col = input_ids.new_full((batch, 1), self.pad_token_id)
        ids = torch.cat([input_ids, pad_col], dim=1)  # [B, T+1]
        embeds = self.backbone.get_input_embeddings()(ids)  # [B, T+1, D]
        special = self.special_token.to(embeds.dtype).expand(batch, -1)  # [B, D]
        # Right padding: the special token sits right after each row's own text, at ``lengths``.
        place = torch.zeros(batch, width + 1, dtype=torch.bool, device=self.device)
        place[rows, lengths] = True  # [B, T+1]
        embeds = torch.where(place.unsqueeze(-1), special.unsqueeze(1), embeds)  # [B, T+1, D]
        positions = torch.arange(width + 1, device=self.device).unsqueeze(0)  # [1, T+1]
        attention_mask = (positions <= lengths.unsqueeze(1)).long()  # [B, T+1]
        out = self.backbone(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False)
        hidden = out.last_hidden_state  # [B, T+1, D]
        return hidden[rows, lengths]  # [B, D]

    @torch.no_grad()
    def encode(self, texts, show_progress=True):
        """Embeddings of ``texts`` as a float32 CPU tensor ``[n, D]``, in batches.

        Texts are batched by token length (less padding); the output keeps the input order.
        """
        texts = list(texts)
        out = torch.empty(len(texts), self.hidden_size, dtype=torch.float32)  # [n, D]
        if not texts:
            return out
        input_ids, lengths = self.tokenize(texts)
        order = torch.argsort(lengths, stable=True)
        was_training = self.training
        self.eval()
        try:
            bar = tqdm(total=len(texts), desc="Encoding items", unit="item",
                       disable=not show_progress)
            with bar:
                for start in range(0, len(texts), self.batch_size):
                    idx = order[start: start + self.batch_size]
                    width = max(int(lengths[idx].max()), 1)
                    with llm_autocast(self.precision, self.device):
                        emb = self(input_ids[idx, :width], lengths[idx])  # [b, D]
                    out[idx] = emb.float().cpu()
                    bar.update(len(idx))
        finally:
            self.train(was_training)
        return out


# ----------------------------------------------------------------------------- cache

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


# ----------------------------------------------------------------------------- post-processing

def center_embeddings(emb, mean=None):
    """``(emb - mean, mean)``; ``mean`` defaults to the mean row of ``emb`` ``[D]``.

    Causal-LM states share a large common direction; removing it is what makes cosine similarity
    between items informative. Compute the mean on real items (not the ``[PAD]`` row).
    """
    if mean is None:
        mean = emb.float().mean(dim=0)  # [D]
    return emb - mean.to(emb.dtype), mean


def whiten(emb, eps=1e-5, dim=None):
    """PCA whitening: centred rows rotated onto the principal axes and scaled to unit variance.

    Returns ``(white [n, dim or D], mean [D], transform [D, dim or D])``; apply to new rows with
    ``(x - mean) @ transform``. ``dim`` keeps only the top principal directions.
    """
    x = emb.double()
    centred, mean = center_embeddings(x)
    cov = centred.T @ centred / max(x.shape[0] - 1, 1)  # [D, D]
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)
    if dim is not None:
        eigvals, eigvecs = eigvals[:dim], eigvecs[:, :dim]
    transform = eigvecs / torch.sqrt(eigvals.clamp_min(0) + eps)  # [D, k]
    white = centred @ transform  # [n, k]
    return white.to(emb.dtype), mean.to(emb.dtype), transform.to(emb.dtype)


def variance_shares(emb, tops=(1, 10)):
    """Share of the variance of ``emb`` ``[n, D]`` held by its top principal directions, e.g.
    ``{"variance_share_top1": 0.35, "variance_share_top10": 0.78}`` (an anisotropy diagnostic:
    near 1 = items differ along few directions)."""
    centred, _ = center_embeddings(emb.double())
    power = torch.linalg.svdvals(centred) ** 2  # [min(n, D)] descending
    total = power.sum().clamp_min(1e-12)
    return {f"variance_share_top{k}": round(float(power[:k].sum() / total), 4) for k in tops}


def mean_pairwise_cosine(emb):
    """Mean cosine over distinct pairs of rows (an anisotropy diagnostic)."""
    unit = nn.functional.normalize(emb.float(), dim=-1)  # [n, D]
    sims = unit @ unit.T  # [n, n]
    n = sims.shape[0]
    return float((sims.sum() - sims.diagonal().sum()) / max(n * (n - 1), 1))
