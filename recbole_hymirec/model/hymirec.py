r"""
HyMiRec
################################################
Reference:
    Zhou et al. "HyMiRec: A Hybrid Multi-interest Learning Framework for LLM-based Sequential
    Recommendation." arXiv 2510.13738, 2025.

The model, end to end (docs/method.md gives the method and the source of each choice):

* stage 1 (at construction, from cache when valid): item text -> content LLM embeddings
  (frozen, centred) -> cosine residual codebook codes;
* the long history (``long_seq_len`` item ids before the target, attached to the batch by the
  plugin's loaders, data/transform.py; decoded from their codes) -> lightweight transformer ->
  M coarse interests;
* [M coarse ; N recent items ; K interest queries] -> LLM refiner (LoRA) -> K interests;
* DMIL: the next ``dmil_window`` training targets are clustered, matched to the interests
  (Hungarian) and trained contrastively, plus an auxiliary loss on the coarse interests;
* scoring: max over the K interests of the cosine with the item tower (``similarity: dot``:
  of the dot product).

Ablations (config keys, see HyMiRec.yaml): ``use_long_history: False`` drops the lightweight
branch (the LLM reads the recent window only); ``long_history_input: raw`` feeds the lightweight
recommender the fp32 content embeddings instead of decoded codes; ``refiner_reads:
full_history`` makes the LLM read the whole ``long_seq_len`` history itself (no codes, no
lightweight branch); ``n_interests: 1`` and ``dmil_window: 1`` are plain settings.

Our additions (off by default): ``use_id_embedding`` (ID residual in the item tower),
``item_bias``, ``loss_masks_seen`` (with the protocol's ``mask_seen_items``),
``readout_loss_weight`` (a softmax loss on the ranking's own max over interests, next to
DMIL's matched-interest loss), ``dense_loss_weight`` with ``coarse_history: before_window``
(every token of the LLM's window also predicts the item after it, HLLM-style, so a training
row trains every prefix of its window, not only the one before its target; the lightweight
branch then reads the history before the LLM's window, so no window token sees its target),
``similarity: dot`` (SASRec's dot-product scorer instead of the scaled cosine),
``ranking_readout`` (the ranking also, or only, uses the last window token's next-item state
that the dense loss trains).
"""
import torch
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn
from torch.nn import functional as F

from recbole_hymirec.data.dataset import (TARGET_POSITION_FIELD, HyMiRecDataset,
                                          training_item_counts)
from recbole_hymirec.data.transform import (HISTORY_BEFORE_WINDOW_FIELD,
                                            HISTORY_BEFORE_WINDOW_LENGTH_FIELD,
                                            LONG_HISTORY_FIELD, LONG_HISTORY_LENGTH_FIELD,
                                            SEEN_ITEMS_FIELD, TARGET_WINDOW_FIELD)
from recbole_hymirec.distributed import rank_zero_first
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.dmil import DMILLoss
from recbole_hymirec.model.item_codes import build_item_codes
from recbole_hymirec.model.lightweight import LightweightInterestExtractor
from recbole_hymirec.model.llm import (PRECISIONS, hidden_size_of, llm_dtype, load_causal_lm,
                                       resolve_precision, token_embedding_rms)
from recbole_hymirec.model.llm_input import LLMInputProjection
from recbole_hymirec.model.random_state import init_seed
from recbole_hymirec.model.refiner import LLMRefiner
from recbole_hymirec.model.retrieval import (max_over_interests_in_chunks, merge_topk,
                                             round_robin_scores, score_items)
from recbole_hymirec.model.sampled_softmax import LogQNegativeSampler, rows_of_items


def _is_number(value):
    """An int or float config value (YAML's booleans are ints to Python, not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class HyMiRec(SequentialRecommender):
    r"""Hybrid multi-interest LLM-based sequential recommender (one RecBole model)."""

    # RecBole's FLOPs probe deep-copies the model: not for an LLM.
    log_flops = False

    def __init__(self, config, dataset):
        super(HyMiRec, self).__init__(config, dataset)

        # load parameters info
        self.long_seq_len = config["long_seq_len"]
        self.n_interests = config["n_interests"]
        self.n_coarse_interests = config["n_coarse_interests"]
        self.embedding_size = config["embedding_size"]
        self.dmil_window = config["dmil_window"]
        self.coarse_loss_weight = config["coarse_loss_weight"]
        self.readout_loss_weight = config["readout_loss_weight"] or 0.0  # ~ switches it off
        self.use_id_embedding = config["use_id_embedding"]
        self.use_item_bias = config["item_bias"]
        self.loss_type = config["loss_type"]
        self.sampled_negatives = config["sampled_negatives"] or 0  # ~ switches it off
        self.ranking_chunk_items = config["ranking_chunk_items"] or 0
        self.loss_masks_seen = config["loss_masks_seen"]
        self.mask_seen_items = config["mask_seen_items"]
        self.llm_num_layers = config["llm_num_layers"]
        self.use_long_history = config["use_long_history"]
        self.long_history_input = config["long_history_input"]
        self.refiner_reads = config["refiner_reads"]
        self.coarse_history = config["coarse_history"]
        self.dense_loss_weight = config["dense_loss_weight"] or 0.0  # ~ switches it off
        self.similarity = config["similarity"]
        self.ranking_readout = config["ranking_readout"]
        self.interest_merge = config["interest_merge"]
        self.precision = config["precision"]
        self._check_config(dataset)
        self.llm_precision = resolve_precision(self.precision, config["device"])  # fp32 / bf16

        # stage 1 (the encoder loads the full LLM only on a cache miss)
        item_codes = build_item_codes(config, dataset)
        self.stage1_stats = item_codes.stats
        self.register_buffer("item_content", item_codes.embeddings, persistent=False)  # [n_items, D]
        # the item tower's input: the whitened rows with whiten_embeddings, else item_content
        self.register_buffer("item_tower_content", item_codes.tower_input, persistent=False)
        self.register_buffer("item_codes", item_codes.codes)  # [n_items, L]
        self.codebook = item_codes.codebook
        # a cache miss draws random numbers (LLM load, encoder): re-seed so that the layers
        # below start the same whether stage 1 came from the cache or not
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        with rank_zero_first():  # a GGUF is converted to its cached fp32 copy once
            llm, _, _ = load_causal_lm(config["llm_path"], num_layers=self.llm_num_layers,
                                       dtype=llm_dtype(self.llm_precision, config["device"]),
                                       device=config["device"])
        content_size = self.item_content.shape[1]
        llm_size = hidden_size_of(llm.config)
        token_rms = token_embedding_rms(llm)

        # define layers
        if self.uses_lightweight:
            self.lightweight = LightweightInterestExtractor(
                content_size, hidden_size=config["light_hidden_size"],
                n_layers=config["light_layers"], n_heads=config["light_heads"],
                n_queries=self.n_coarse_interests, max_len=self.long_seq_len,
                dropout=config["light_dropout"])
            self.coarse_to_llm = LLMInputProjection(config["light_hidden_size"], llm_size, token_rms)
            self.coarse_head = nn.Linear(config["light_hidden_size"], self.embedding_size)
        self.item_to_llm = LLMInputProjection(content_size, llm_size, token_rms)
        self.refiner = LLMRefiner(
            llm, self.n_interests, self.embedding_size, lora_r=config["lora_r"],
            lora_alpha=config["lora_alpha"], lora_dropout=config["lora_dropout"],
            lora_target_modules=config["lora_target_modules"], head_dropout=config["head_dropout"],
            precision=self.llm_precision)
        self.item_tower = nn.Linear(content_size, self.embedding_size)
        self.item_id_embedding = (self._zero_id_embedding() if self.use_id_embedding else None)
        # a learnable per-item logit offset: cosine scores cannot encode item popularity
        self.item_bias = nn.Parameter(torch.zeros(self.n_items)) if self.use_item_bias else None
        self.dmil = DMILLoss(temperature_init=config["temperature"],
                             kmeans_iters=config["dmil_kmeans_iters"], similarity=self.similarity,
                             cluster_max_cosine=config["dmil_cluster_max_cosine"])
        self.negative_sampler = (LogQNegativeSampler(
            training_item_counts(dataset), self.sampled_negatives, config["negative_sampling_alpha"])
            if self.sampled_negatives else None)

    def _check_config(self, dataset):
        if not isinstance(dataset, HyMiRecDataset):
            raise ConfigError("HyMiRec needs HyMiRecDataset (long histories as a per-user table). "
                              "Fix: build the dataset with recbole_hymirec.utils.create_dataset.")
        if self.loss_type not in ("CE", "BPR"):
            raise ConfigError(f"loss_type={self.loss_type!r} is not supported. Fix: CE (softmax "
                              "over all items) or BPR (softmax over RecBole's sampled negatives).")
        for key in ("n_interests", "n_coarse_interests", "embedding_size", "dmil_window"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r} must be an integer >= 1. Fix: --{key}=4")
        if not isinstance(self.ranking_chunk_items, int) or self.ranking_chunk_items < 0:
            raise ConfigError(f"ranking_chunk_items={self.ranking_chunk_items!r} must be an integer "
                              ">= 0 (0 = every item at once). Fix: --ranking_chunk_items=262144")
        if self.sampled_negatives and self.loss_type != "CE":
            raise ConfigError(f"sampled_negatives={self.sampled_negatives} replaces the full "
                              f"softmax of loss_type CE, but loss_type={self.loss_type}. Fix: "
                              "--loss_type=CE, or --sampled_negatives=0.")
        self._check_ablation_keys()

    def _check_ablation_keys(self):
        choices = {"long_history_input": ("codes", "raw"),
                   "refiner_reads": ("hybrid", "full_history"),
                   "coarse_history": ("up_to_target", "before_window"),
                   "similarity": ("cosine", "dot"),
                   "ranking_readout": ("interests", "interests_and_next", "next"),
                   "interest_merge": ("max", "round_robin"),
                   "precision": PRECISIONS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}={getattr(self, key)!r} is not one of {list(allowed)}. "
                                  f"Fix: --{key}={allowed[0]} (the default).")
        if not (_is_number(self.readout_loss_weight) and self.readout_loss_weight >= 0):
            raise ConfigError(f"readout_loss_weight={self.readout_loss_weight!r} must be a number "
                              ">= 0 (0 = off). Fix: --readout_loss_weight=1.0")
        if not (_is_number(self.dense_loss_weight) and self.dense_loss_weight >= 0):
            raise ConfigError(f"dense_loss_weight={self.dense_loss_weight!r} must be a number "
                              ">= 0 (0 = off). Fix: --dense_loss_weight=1.0")
        # booleans need no check here: the plugin's Config refuses a value of the wrong kind
        if self.loss_masks_seen and not self.mask_seen_items:
            raise ConfigError("loss_masks_seen=True trains for a ranking that masks seen items, "
                              "but mask_seen_items=False. Fix: --mask_seen_items=True, or "
                              "--loss_masks_seen=False.")
        if self.dense_loss_weight > 0 and self.uses_lightweight and \
                self.coarse_history == "up_to_target":
            raise ConfigError("dense_loss_weight > 0 trains each window token to predict the next "
                              "item, but the window reads the coarse interests, built from a "
                              "history that holds that item. Fix: --coarse_history=before_window, "
                              "or --dense_loss_weight=0.")
        if self.ranking_readout != "interests" and self.dense_loss_weight == 0:
            raise ConfigError(f"ranking_readout={self.ranking_readout} ranks with the last window "
                              "token's next-item state, which only dense_loss_weight > 0 trains. "
                              "Fix: --dense_loss_weight=1.0, or --ranking_readout=interests.")
        if self.refiner_reads == "full_history" and not self.use_long_history:
            raise ConfigError("refiner_reads=full_history reads the long history while "
                              "use_long_history=False drops it. Fix: --refiner_reads=hybrid "
                              "(no long history) or --use_long_history=True (LLM reads it).")

    def _zero_id_embedding(self):
        """An ID embedding that starts at zero: the item tower starts as the content model and
        the IDs learn a residual. (nn.Embedding's N(0, 1) rows have norm ~8, about 7x the
        projected content, and would bury it under noise.)"""
        embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        nn.init.zeros_(embedding.weight)
        return embedding

    @property
    def uses_lightweight(self):
        """The lightweight branch runs unless it is ablated or the LLM reads the history."""
        return self.use_long_history and self.refiner_reads == "hybrid"

    # ------------------------------------------------------------------ item side

    def item_embeddings(self, items=slice(None)):
        """Item tower over the frozen content embeddings (+ ID embedding) -> ``[n_items, d]``;
        ``items`` (a slice or ids ``[n]``) computes those rows only ``[n, d]``."""
        rows = self.item_tower(self.item_tower_content[items])  # [n, d]
        if self.item_id_embedding is not None:
            rows = rows + self.item_id_embedding.weight[items]
        return rows

    def decoded_items(self, item_ids):
        """Approximate content embeddings rebuilt from the items' codes ``[..., D]``."""
        codes = self.item_codes[item_ids.reshape(-1)]  # [n, L]
        return self.codebook.decode(codes).reshape(*item_ids.shape, -1)

    # ------------------------------------------------------------------ user side

    @staticmethod
    def batch_field(interaction, field):
        """``interaction[field]``, a field the plugin's loaders attach (data/transform.py)."""
        if field not in interaction:
            raise ConfigError(f"the batch has no field '{field}': HyMiRec reads its user history "
                              "from the batch. Fix: build the loaders with "
                              "recbole_hymirec.utils.data_preparation.")
        return interaction[field]

    def _history(self, interaction, ids_field, length_field):
        """Item ids ``[B, L]`` (left-aligned) + mask ``[B, L]`` of a history in the batch."""
        items = self.batch_field(interaction, ids_field)  # [B, L]
        lengths = self.batch_field(interaction, length_field)  # [B]
        mask = torch.arange(items.shape[1], device=items.device) < lengths.unsqueeze(1)  # [B, L]
        return items, mask

    def long_history_items(self, interaction):
        """Ids of the ``long_seq_len`` items before each target ``[B, L]`` + mask ``[B, L]``."""
        return self._history(interaction, LONG_HISTORY_FIELD, LONG_HISTORY_LENGTH_FIELD)

    def coarse_history_items(self, interaction):
        """What the lightweight branch reads ``[B, L]`` + mask ``[B, L]``: the long history up
        to the target, or with ``coarse_history: before_window`` the ``long_seq_len`` items
        before the LLM's window (the window is the ``item_seq_len`` items before the target)."""
        if self.coarse_history == "up_to_target":
            return self.long_history_items(interaction)
        return self._history(interaction, HISTORY_BEFORE_WINDOW_FIELD,
                             HISTORY_BEFORE_WINDOW_LENGTH_FIELD)

    def long_history(self, interaction):
        """The long history as embeddings ``[B, L, D]`` (decoded codes, or the fp32 embeddings
        with ``long_history_input: raw``) + mask."""
        items, mask = self.long_history_items(interaction)
        return self.history_content(items), mask

    def history_content(self, items):
        """Content of long-history items ``[B, L] -> [B, L, D]``."""
        if self.long_history_input == "raw":
            return self.item_content[items]
        return self.decoded_items(items)

    def _window(self, interaction):
        """The items the LLM reads as ``(ids [B, T], mask [B, T])``: the recent window, or the
        whole long history with ``refiner_reads: full_history``."""
        if self.refiner_reads == "full_history":
            return self.long_history_items(interaction)
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        mask = torch.arange(item_seq.shape[1], device=self.device) < item_seq_len.unsqueeze(1)
        return item_seq, mask

    def forward(self, interaction):
        """``(refined interests [B, K, d], coarse interests [B, M, d] or None)``; never reads
        the target."""
        interests, coarse, _ = self._user_side(interaction)
        return interests, coarse

    def _user_side(self, interaction, with_recent=False):
        """``forward``, plus ``(window ids [B, T], mask [B, T], outputs [B, T, d])`` of the
        LLM's window tokens with ``with_recent`` (else None)."""
        items, items_mask = self._window(interaction)  # [B, T], [B, T]
        recent = self.item_to_llm(self.item_content[items])  # [B, T, D_llm]
        if self.uses_lightweight:
            history_items, history_mask = self.coarse_history_items(interaction)  # [B, L], [B, L]
            coarse = self.lightweight(self.history_content(history_items),
                                      history_mask)  # [B, M, h]
            coarse_tokens = self.coarse_to_llm(coarse)  # [B, M, D_llm]
        else:
            coarse = None
            coarse_tokens = recent.new_zeros(recent.shape[0], 0, recent.shape[2])  # [B, 0, D_llm]
        coarse_mask = torch.ones(coarse_tokens.shape[:2], dtype=torch.bool, device=self.device)
        interests, recent_out = self.refiner.forward_with_recent(
            coarse_tokens, coarse_mask, recent, items_mask, with_recent)  # [B, K, d], [B, T, d]
        window = (items, items_mask, recent_out) if with_recent else None
        return interests, None if coarse is None else self.coarse_head(coarse), window

    def ranking_interests(self, interaction):
        """The vectors whose max the ranking takes ``[B, K', d]``: the K refined interests
        (``ranking_readout: interests``), those plus the last window token's next-item state
        (``interests_and_next``, K' = K + 1), or that state alone (``next``, K' = 1: HLLM's
        single interest). The state is the dense loss's prediction of the row's target."""
        if self.ranking_readout == "interests":
            return self.forward(interaction)[0]
        interests, _, (items, _, outputs) = self._user_side(interaction, with_recent=True)
        last = (self._window_lengths(items) - 1).clamp(min=0)  # [B]; no dropout at ranking
        next_state = outputs[torch.arange(len(last), device=last.device), last].unsqueeze(1)  # [B, 1, d]
        if self.ranking_readout == "next":
            return next_state
        return torch.cat([interests, next_state], dim=1)  # [B, K + 1, d]

    # ------------------------------------------------------------------ RecBole API

    def target_window(self, interaction):
        """The next ``dmil_window`` training targets of each row ``[B, W]`` (0 = padding)."""
        return self.batch_field(interaction, TARGET_WINDOW_FIELD)

    def _negatives(self, interaction):
        """Negatives shared by the batch ``[B, S]``: drawn from the training popularity with
        ``sampled_negatives``, RecBole's sampled ones for loss_type BPR, else None."""
        if self.negative_sampler is not None:
            return self.negative_sampler.sample(interaction[self.ITEM_ID].shape[0])
        if self.loss_type != "BPR":
            return None
        negatives = interaction[self.NEG_ITEM_ID]  # [B]
        return negatives.unsqueeze(0).expand(negatives.shape[0], -1)  # [B, B]

    def seen_items(self, interaction):
        """Every item before each row's target ``[B, S]``, entry ``j`` the user's item at
        position ``j`` (0 = padding), for ``loss_masks_seen``; else None."""
        if not self.loss_masks_seen:
            return None
        return self.batch_field(interaction, SEEN_ITEMS_FIELD)

    def calculate_loss(self, interaction):
        interests, coarse, window = self._user_side(interaction, self.dense_loss_weight > 0)
        targets = self.target_window(interaction)  # [B, W]
        negatives = self._negatives(interaction)
        items = self._training_items(interaction, targets, negatives, window)  # [n_items, d]
        scoring = (targets, items, negatives, self._training_bias(), self.seen_items(interaction))
        losses = (self.dmil(interests, *scoring),)
        if coarse is not None:
            losses += (self.coarse_loss_weight * self.dmil(coarse, *scoring),)
        if self.readout_loss_weight > 0:
            losses += (self.readout_loss_weight * self.dmil.readout_loss(interests, *scoring),)
        if window is not None:
            losses += (self.dense_loss_weight * self.dense_loss(interaction, window, items,
                                                                negatives, targets),)
        return losses[0] if len(losses) == 1 else losses

    def _training_items(self, interaction, targets, negatives, window):
        """The item table a training step scores ``[n_items, d]``: the tower over every item
        for a full softmax; with ``sampled_negatives`` only the rows the step reads (targets,
        negatives, and for the dense loss the window's items and the row's item), the others 0."""
        if self.negative_sampler is None:
            return self.item_embeddings()
        read = [targets.reshape(-1), negatives[0], interaction[self.ITEM_ID]]  # negatives: shared
        if window is not None:
            read.append(window[0].reshape(-1))
        return rows_of_items(self.item_embeddings, torch.cat(read), self.n_items)

    def _training_bias(self):
        """The training logits' per-item offset ``[n_items]`` or None: the item bias, minus
        ``log q`` with ``sampled_negatives`` (the log-Q correction)."""
        if self.negative_sampler is None:
            return self.item_bias
        return self.negative_sampler.logit_offset(self.item_bias)

    @staticmethod
    def _window_lengths(window_items):
        """Items in each left-aligned window ``[B, T] -> [B]``."""
        return (window_items > 0).sum(dim=1)

    def dense_next_items(self, interaction, window_items, window_mask):
        """The item after each window token ``[B, T]`` (0 = none): the next window item, and the
        row's target after the last one."""
        lengths = self._window_lengths(window_items)  # [B]
        following = torch.cat([window_items[:, 1:], window_items.new_zeros(len(lengths), 1)], 1)
        last = (lengths - 1).clamp(min=0).unsqueeze(1)  # [B, 1]
        target = interaction[self.ITEM_ID].unsqueeze(1) * (lengths > 0).unsqueeze(1)  # [B, 1]
        following = following.scatter(1, last, target)  # [B, T]
        return following * window_mask

    def dense_loss(self, interaction, window, items, negatives, targets):
        """Softmax loss of every window token's output against the item after it (same logit,
        bias, negatives and seen-item mask as the other losses). The token's other positives,
        the later window items and the row's ``W`` targets ``[B, W]``, are never its negatives.
        Every slot of the window is scored, V = B * T (a fixed shape: selecting the real tokens
        would wait for the device to count them); a slot with no next item counts for nothing."""
        window_items, window_mask, outputs = window  # [B, T], [B, T], [B, T, d]
        following = self.dense_next_items(interaction, window_items, window_mask)  # [B, T]
        rows, slots = torch.meshgrid(torch.arange(following.shape[0], device=following.device),
                                     torch.arange(following.shape[1], device=following.device),
                                     indexing="ij")
        rows, slots = rows.reshape(-1), slots.reshape(-1)  # [V], [V]
        never_negative = self.dense_co_positives(window_items, targets, rows, slots)  # [V, T + W]
        if self.loss_masks_seen:  # the user's items before each predicted one
            seen = self.seen_before_window_tokens(interaction, window_items, rows, slots)  # [V, S]
            never_negative = torch.cat([seen, never_negative], dim=1)  # [V, S + T + W]
        return self.dmil.readout_loss(
            outputs[rows, slots].unsqueeze(1), following[rows, slots].unsqueeze(1), items,
            None if negatives is None else negatives[rows], self._training_bias(), never_negative)

    def seen_before_window_tokens(self, interaction, window_items, rows, slots):
        """The user's items before the item that window token ``(rows, slots)`` predicts
        ``[V, S]`` (0 = padding): the row's seen items cut at that item's position."""
        seen = self.seen_items(interaction)[rows]  # [V, S], entry j = the item at position j
        lengths = self._window_lengths(window_items)  # [B]
        positions = interaction[TARGET_POSITION_FIELD]  # [B]
        predicted = positions[rows] - lengths[rows] + slots + 1  # [V] their user positions
        steps = torch.arange(seen.shape[1], device=seen.device)  # [S]
        return seen * (steps.unsqueeze(0) < predicted.unsqueeze(1))  # [V, S]

    @staticmethod
    def dense_co_positives(window_items, targets, rows, slots):
        """Items after window token ``(rows, slots)`` that are positives of later tokens or of
        the row: the window items after the slot, then the row's targets ``[V, T + W]`` (0 =
        none)."""
        steps = torch.arange(window_items.shape[1], device=window_items.device)  # [T]
        later = window_items[rows] * (steps.unsqueeze(0) > slots.unsqueeze(1))  # [V, T]
        return torch.cat([later, targets[rows]], dim=1)  # [V, T + W]

    def _with_bias(self, score, item_ids=None):
        """The training logit ``scale * s + b_i`` when there is an item bias, else the score
        ``s`` (a cosine, or a dot product whose scale is 1)."""
        if self.item_bias is None:
            return score
        bias = self.item_bias if item_ids is None else self.item_bias[item_ids]
        return self.dmil.logit_scale() * score + bias

    def predict(self, interaction):
        item_ids = interaction[self.ITEM_ID]  # [B]
        if self.interest_merge == "round_robin":  # a rank is relative to the whole catalogue
            return self.full_sort_predict(interaction).gather(1, item_ids.unsqueeze(1)).squeeze(1)
        interests = self.ranking_interests(interaction)
        items = self.item_embeddings()[item_ids]  # [B, d]
        return self._with_bias(score_items(interests, items, self.dmil.normalize), item_ids)

    def full_sort_predict(self, interaction):
        interests = self.ranking_interests(interaction)
        if self.interest_merge == "round_robin":
            return round_robin_scores(interests, self.item_embeddings(), self.dmil.normalize,
                                      self.item_bias, self.dmil.logit_scale())  # [B, n_items]
        scores = max_over_interests_in_chunks(interests, self.item_embeddings, self.n_items,
                                              self.ranking_chunk_items, self.dmil.normalize)
        return self._with_bias(scores)  # [B, n_items]

    def recommend_topk(self, interaction, k, exclude=None):
        """Per-interest top-k lists merged round robin, deduplicated ``[B, k]`` (for export)."""
        interests = self.ranking_interests(interaction)
        return merge_topk(interests, self.item_embeddings(), k, exclude=exclude,
                          item_bias=self.item_bias, scale=self.dmil.logit_scale(),
                          normalize=self.dmil.normalize)

    def proposing_interests(self, interaction, item_ids):
        """For each item of ``item_ids`` ``[B, k]``, the index of the ranking vector (interest)
        whose score is the item's ``full_sort_predict`` score, the max over them ``[B, k]``."""
        interests = self.ranking_interests(interaction)  # [B, K', d]
        items = self.item_embeddings()[item_ids]  # [B, k, d]
        if self.dmil.normalize:
            interests, items = F.normalize(interests, dim=-1), F.normalize(items, dim=-1)
        return torch.einsum("bhd,bjd->bjh", interests, items).argmax(dim=2)  # [B, k]

    # ------------------------------------------------------------------ new items

    def add_items(self, content, tower_content, codes):
        """Append items the model was not trained on, without retraining; returns their ids.

        ``content`` ``[n, D]`` are their centred content embeddings, ``tower_content`` the item
        tower's input for them, ``codes`` ``[n, L]`` their codebook codes. Their ID embedding
        and item bias, when the model has them, are zero: the value they start training at.
        """
        first_id = self.n_items
        self.item_content = torch.cat([self.item_content, content.to(self.item_content)])
        self.item_tower_content = torch.cat([self.item_tower_content,
                                             tower_content.to(self.item_tower_content)])
        self.item_codes = torch.cat([self.item_codes, codes.to(self.item_codes)])
        self.n_items += len(content)
        if self.item_id_embedding is not None:
            weight = self.item_id_embedding.weight.data
            self.item_id_embedding = nn.Embedding.from_pretrained(
                torch.cat([weight, weight.new_zeros(len(content), weight.shape[1])]),
                freeze=False, padding_idx=0)
        if self.item_bias is not None:
            bias = self.item_bias.data
            self.item_bias = nn.Parameter(torch.cat([bias, bias.new_zeros(len(content))]))
        return torch.arange(first_id, self.n_items)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_keys(self):
        """State entries a checkpoint needs: trainable weights and persistent buffers (codebook,
        item codes); the frozen LLM weights come back from ``llm_path``."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        buffers = set(self.state_dict().keys()) - {name for name, _ in self.named_parameters()}
        return trainable | buffers

    def checkpoint_state_dict(self):
        keys = self.checkpoint_keys()
        return {k: v for k, v in self.state_dict().items() if k in keys}

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Loads a checkpoint state: only frozen LLM weights may be missing from it."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict:
            missing = sorted(set(result.missing_keys) & self.checkpoint_keys())
            if missing or result.unexpected_keys:
                raise RuntimeError(
                    f"checkpoint does not fit this HyMiRec: missing {missing[:5]}, unexpected "
                    f"{sorted(result.unexpected_keys)[:5]}. Fix: load it with the config it was "
                    "trained with (same llm_path, sizes and dataset).")
        return result
