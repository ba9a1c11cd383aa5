"""LLM refiner: a causal LLM backbone (LoRA-tuned) turns ``M`` coarse interests and the ``N`` most
recent items into ``K`` refined interest embeddings.

The backbone reads ``inputs_embeds = [real coarse tokens ; real recent tokens ; K query tokens]``
per row. Rows are left-padded so that every row's ``K`` learnable query tokens sit in the last ``K``
positions; the last-layer states there go through a projection head (RED-Rec style:
``LayerNorm(x + Dropout(Linear(GELU(Linear(x)))))`` then ``Linear(D -> d)``).

Only the base decoder (``backbone_of``) is kept: the LM head would project every position onto
the vocabulary for nothing. The backbone weights are frozen; LoRA adapters (peft) on
``lora_target_modules`` are the only backbone weights that train (none when ``lora_r == 0``).

This module does not import RecBole.
"""
import functools

import torch
from torch import nn

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.llm import backbone_of, hidden_size_of, llm_autocast, token_embedding_rms
from recbole_hymirec.model.lora import as_module_list, inject_lora
from recbole_hymirec.model.row_chunks import forward_in_row_chunks

# ----------------------------------------------------------------------------- refiner

class ProjectionHead(nn.Module):
    """``LayerNorm(x + Dropout(Linear(GELU(Linear(x)))))`` in ``D``, then ``Linear(D -> d)``."""

    def __init__(self, hidden_size, output_dim, dropout=0.1):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, hidden_size),
            nn.GELU(),
            nn.Linear(hidden_size, hidden_size),
            nn.Dropout(dropout),
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.out = nn.Linear(hidden_size, output_dim)

    def forward(self, x):
        return self.out(self.norm(x + self.mlp(x)))


class LLMRefiner(nn.Module):
    """Coarse interests + recent items -> ``K`` refined interest embeddings through a causal LLM.

    Args:
        llm_model: a causal LM from :func:`recbole_hymirec.model.llm.load_causal_lm` (already
            truncated to the wanted layers); only its base decoder is used. It is modified in
            place (frozen, LoRA injected): give each refiner its own loaded model.
        n_interests: ``K``, the number of learnable interest query tokens.
        output_dim: ``d``, the size of the refined interest embeddings (scoring space).
        lora_r: LoRA rank; ``0`` freezes the whole backbone (no peft).
        lora_alpha, lora_dropout: LoRA scaling and dropout.
        lora_target_modules: names of the layers to adapt (Llama/Qwen2: ``q_proj``, ``v_proj``;
            GPT-2: ``c_attn``); a list, or a comma-separated string.
        head_dropout: dropout inside the projection head.
        precision: ``bf16`` runs the backbone under bf16 autocast, ``fp32`` without it (as
            resolved by :func:`recbole_hymirec.model.llm.resolve_precision`); the head, and
            what it returns, stay fp32 either way.
    """

    RESOLVED_PRECISIONS = ("fp32", "bf16")

    def __init__(self, llm_model, n_interests, output_dim, lora_r=8, lora_alpha=16,
                 lora_dropout=0.05, lora_target_modules=("q_proj", "v_proj"), head_dropout=0.1,
                 precision="fp32"):
        super().__init__()
        self._check_args(n_interests, output_dim, lora_r)
        if precision not in self.RESOLVED_PRECISIONS:
            raise ConfigError(f"precision={precision!r} is not one of "
                              f"{list(self.RESOLVED_PRECISIONS)} (resolve 'auto' first). "
                              "Fix: pass resolve_precision(precision, device).")
        self.precision = precision
        self.n_interests = int(n_interests)
        self.output_dim = int(output_dim)
        self.lora_r = int(lora_r)
        self.lora_target_modules = as_module_list(lora_target_modules)

        backbone = backbone_of(llm_model)
        backbone.requires_grad_(False)
        if self.lora_r > 0:
            if not self.lora_target_modules:
                raise ConfigError(
                    "lora_target_modules is empty while lora_r > 0. Fix: name the layers to adapt, "
                    "e.g. --lora_target_modules=\"['q_proj', 'v_proj']\", or set lora_r=0."
                )
            backbone = inject_lora(backbone, self.lora_r, lora_alpha, lora_dropout,
                                    self.lora_target_modules)
        self.backbone = backbone
        self.hidden_size = hidden_size_of(backbone.config)  # D

        self.interest_queries = nn.Parameter(torch.empty(self.n_interests, self.hidden_size))
        # drawn at the scale of the LLM's own token embeddings, like the tokens around them
        nn.init.normal_(self.interest_queries, std=token_embedding_rms(backbone))  # [K, D]
        self.head = ProjectionHead(self.hidden_size, self.output_dim, head_dropout)

    @staticmethod
    def _check_args(n_interests, output_dim, lora_r):
        if int(n_interests) < 1:
            raise ConfigError(
                f"n_interests={n_interests}: the refiner needs at least one interest query. "
                "Fix: set n_interests to 1 or more (default 4)."
            )
        if int(output_dim) < 1:
            raise ConfigError(
                f"output_dim={output_dim}: the refined interests need a positive size. "
                "Fix: set it to 1 or more (e.g. 64)."
            )
        if int(lora_r) < 0:
            raise ConfigError(
                f"lora_r={lora_r} is negative. Fix: use a LoRA rank >= 1 (default 8), "
                "or 0 to freeze the LLM."
            )

    # ------------------------------------------------------------------------- helpers

    def trainable_parameter_names(self):
        """Names of the parameters that train (LoRA adapters, queries, head)."""
        return [name for name, p in self.named_parameters() if p.requires_grad]

    @property
    def _backbone_dtype(self):
        return self.backbone.get_input_embeddings().weight.dtype

    def build_inputs(self, coarse, coarse_mask, recent, recent_mask):
        """Left-padded backbone inputs with the ``K`` query tokens in the last ``K`` positions.

        Real tokens of each row (coarse then recent, each in its own order) are packed to the
        right, just before the queries, with a vectorised scatter; masks need not be contiguous.
        The context is ``M + N`` slots wide whatever the rows hold: a width read from the masks
        would wait for the device on every step.

        Returns:
            ``(inputs_embeds [B, T, D], attention_mask [B, T], position_ids [B, T],
            recent_slots [B, N])`` with ``T = M + N + K``; ``recent_slots`` is where each real
            recent token sits (any slot in ``[0, T)`` for a masked one).
        """
        tokens = torch.cat([coarse, recent], dim=1)  # [B, M+N, D]
        mask = torch.cat([coarse_mask, recent_mask], dim=1).bool()  # [B, M+N]
        batch, width, dim = tokens.shape  # width: context width without the queries
        n_real = mask.sum(dim=1)  # [B]

        # Real token j of row b goes to (width - n_real[b]) + its rank among the row's real tokens;
        # a masked token to a slot of its own past the context, dropped below.
        rank = mask.long().cumsum(dim=1) - 1  # [B, M+N]
        dest = (width - n_real).unsqueeze(1) + rank  # [B, M+N]
        beyond = width + torch.arange(width, device=tokens.device)  # [M+N]
        slot = torch.where(mask, dest, beyond.unsqueeze(0))  # [B, M+N], all distinct per row
        context = tokens.new_zeros(batch, 2 * width, dim).scatter(
            1, slot.unsqueeze(2).expand(-1, -1, dim), tokens)[:, :width]  # [B, M+N, D]

        queries = self.interest_queries.to(tokens.dtype).expand(batch, -1, -1)  # [B, K, D]
        inputs_embeds = torch.cat([context, queries], dim=1)  # [B, T, D]

        slots = torch.arange(width, device=tokens.device).unsqueeze(0)  # [1, M+N]
        context_mask = slots >= (width - n_real).unsqueeze(1)  # [B, M+N]
        query_mask = context_mask.new_ones(batch, self.n_interests)  # [B, K]
        attention_mask = torch.cat([context_mask, query_mask], dim=1).long()  # [B, T]
        # Each row's real tokens get positions 0.. whatever its padding (RoPE and GPT-2 alike).
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, T]
        n_recent = recent.shape[1]
        recent_slots = dest[:, dest.shape[1] - n_recent:]
        return inputs_embeds, attention_mask, position_ids, recent_slots.clamp(min=0)  # [B, N]

    # ------------------------------------------------------------------------- forward

    def forward(self, coarse, coarse_mask, recent, recent_mask):
        """Refined interests ``[B, K, d]`` (float32).

        Args:
            coarse: coarse interest tokens ``[B, M, D]``, with bool mask ``coarse_mask [B, M]``.
            recent: recent item tokens ``[B, N, D]``, with bool mask ``recent_mask [B, N]``
                (``True`` = a real item).
        """
        return self.forward_with_recent(coarse, coarse_mask, recent, recent_mask)[0]

    def forward_with_recent(self, coarse, coarse_mask, recent, recent_mask, with_recent=False):
        """``(refined interests [B, K, d], recent outputs [B, N, d] or None)``: with
        ``with_recent``, the head also reads the last-layer state of every recent token, which
        has seen that token and the context before it (HLLM-style next-item states; values at
        masked tokens are meaningless)."""
        self._check_shapes(coarse, coarse_mask, recent, recent_mask)
        tokens_per_row = coarse.shape[1] + recent.shape[1] + self.n_interests
        return forward_in_row_chunks(functools.partial(self._refine, with_recent=with_recent),
                                     (coarse, coarse_mask, recent, recent_mask), tokens_per_row)

    def _refine(self, coarse, coarse_mask, recent, recent_mask, with_recent):
        """``forward_with_recent`` on checked inputs."""
        inputs_embeds, attention_mask, position_ids, recent_slots = self.build_inputs(
            coarse, coarse_mask, recent, recent_mask)
        with llm_autocast(self.precision, inputs_embeds.device):
            out = self.backbone(inputs_embeds=inputs_embeds.to(self._backbone_dtype),
                                attention_mask=self.backbone_attention_mask(attention_mask),
                                position_ids=position_ids, use_cache=False)
        states = out.last_hidden_state  # [B, T, D]; may be bf16: cast only what the head reads
        interests = self.head(states[:, -self.n_interests:].float())  # [B, K, d]
        if not with_recent:
            return interests, None
        index = recent_slots.unsqueeze(2).expand(-1, -1, states.shape[2])  # [B, N, D]
        return interests, self.head(states.gather(1, index).float())  # [B, N, d]

    def backbone_attention_mask(self, attention_mask):
        """The causal padding mask ``[B, 1, T, T]`` of a ``[B, T]`` one, in the form the
        backbone's attention reads (boolean for ``sdpa``, additive for ``eager``); another
        attention implementation gets the ``[B, T]`` mask. Given ``[B, T]``, transformers would
        test it for padding on the host, a device sync per step. A padding slot attends to
        itself (a softmax over nothing would be NaN, and NaN reaches the gradients); real
        tokens never attend to padding."""
        implementation = getattr(self.backbone.config, "_attn_implementation", None)
        if implementation not in ("sdpa", "eager"):
            return attention_mask
        keys = attention_mask.bool()  # [B, T]
        length = keys.shape[1]
        earlier = torch.ones(length, length, dtype=torch.bool, device=keys.device).tril()  # [T, T]
        itself = torch.eye(length, dtype=torch.bool, device=keys.device)  # [T, T]
        allowed = (earlier & keys[:, None, None, :]) | itself  # [B, 1, T, T]
        if implementation == "sdpa":
            return allowed
        blocked = torch.finfo(torch.float32).min
        return torch.zeros(allowed.shape, device=keys.device).masked_fill(~allowed, blocked)

    def _check_shapes(self, coarse, coarse_mask, recent, recent_mask):
        pairs = (("coarse", coarse, coarse_mask), ("recent", recent, recent_mask))
        for name, tokens, mask in pairs:
            if tokens.dim() != 3 or tokens.shape[-1] != self.hidden_size:
                raise ValueError(
                    f"{name} must be [B, L, {self.hidden_size}] (the LLM hidden size), "
                    f"got {tuple(tokens.shape)}; project it to the LLM width first."
                )
            if tuple(mask.shape) != tuple(tokens.shape[:2]):
                raise ValueError(f"{name}_mask must be {tuple(tokens.shape[:2])}, "
                                 f"got {tuple(mask.shape)}.")
        if coarse.shape[0] != recent.shape[0]:
            raise ValueError(f"coarse and recent batch sizes differ: {coarse.shape[0]} vs "
                             f"{recent.shape[0]}.")
