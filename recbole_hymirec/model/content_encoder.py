"""Content LLM item encoder (HLLM style): ``text + <special token>`` through a causal LLM, the
last-layer state at the special token is the item embedding.

* :class:`ContentEncoder` runs the backbone on ``inputs_embeds`` with a learnable special-token
  embedding appended after each text (initialised from an existing token, so a frozen encoder
  already gives usable embeddings).

The texts come from ``data/item_text.py``; ``embedding_cache.py`` stores what the encoder
gives and ``centring.py`` centres it (docs/method.md: stage 1, in order).
``forward`` is differentiable: the optional stage-1 fine-tuning (LoRA + the special token,
next-item contrastive loss) lives in ``encoder_finetune.py``; by default the encoder is frozen.
"""
import torch
from torch import nn
from tqdm import tqdm

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.llm import backbone_of, hidden_size_of, llm_autocast

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
