# -*- coding: utf-8 -*-
r"""
ComiRec
################################################
Reference:
    Yukuo Cen et al. "Controllable Multi-Interest Framework for Recommendation." in KDD 2020.

Reference code:
    https://github.com/THUDM/ComiRec

The self-attentive variant (ComiRec-SA), the multi-interest baseline RecBole lacks:

* the last ``N`` items ``H`` (+ learnable position embeddings) -> ``A = softmax_N(W2 tanh(W1 H^T))``
  ``[B, K, N]`` with padded positions masked -> ``K`` interests ``V = A H`` ``[B, K, d]``;
* training: hard readout -- the interest with the largest inner product with the target item
  takes the row -- then a softmax loss of that interest over all items (CE) or over
  [positive ; RecBole's sampled negatives of the batch] (BPR);
* scoring: max over the ``K`` interests of the inner product with the item embedding.
"""
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.retrieval import max_over_interests

# properties/model/ComiRec.yaml's sizes, quoted in the fix of a bad value
_SIZE_DEFAULTS = {"n_interests": 4, "embedding_size": 64, "comirec_hidden_size": 256}


class SelfAttentiveExtractor(nn.Module):
    r"""``K`` attention heads over the positions of a sequence (ComiRec-SA's extraction layer)."""

    def __init__(self, embedding_size, hidden_size, n_interests):
        super(SelfAttentiveExtractor, self).__init__()
        self.W1 = nn.Linear(embedding_size, hidden_size)
        self.W2 = nn.Linear(hidden_size, n_interests)

    def forward(self, keys, mask):
        """Attention weights ``[B, K, N]``: keys ``[B, N, d]``, mask ``[B, N]`` (True = item)."""
        logits = self.W2(torch.tanh(self.W1(keys))).transpose(1, 2)  # [B, K, N]
        # finfo.min rather than -inf: padded positions still get exactly 0 weight, and an
        # all-padding row gives a uniform (finite) distribution instead of NaN.
        logits = logits.masked_fill(~mask.unsqueeze(1), torch.finfo(logits.dtype).min)
        return torch.softmax(logits, dim=-1)


def hard_readout(interests, target_emb):
    """Per row, the interest with the largest inner product with the target ``[B, d]``.

    The choice is an argmax (no gradient flows through it); the chosen interest keeps its
    gradient. interests ``[B, K, d]``, target_emb ``[B, d]``.
    """
    affinity = torch.einsum("bkd,bd->bk", interests, target_emb)  # [B, K]
    chosen = affinity.detach().argmax(dim=1)  # [B]
    rows = torch.arange(interests.shape[0], device=interests.device)
    return interests[rows, chosen]  # [B, d]


class ComiRec(SequentialRecommender):
    r"""ComiRec-SA: ``K`` interests by multi-head self-attentive pooling, hard readout training."""

    def __init__(self, config, dataset):
        super(ComiRec, self).__init__(config, dataset)

        # load parameters info
        self.embedding_size = config["embedding_size"]
        self.n_interests = config["n_interests"]
        self.comirec_hidden_size = config["comirec_hidden_size"]
        self.dropout_prob = config["dropout_prob"]
        self.loss_type = config["loss_type"]
        self._check_config()

        # define layers
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.embedding_size)
        self.emb_dropout = nn.Dropout(self.dropout_prob)
        self.extractor = SelfAttentiveExtractor(
            self.embedding_size, self.comirec_hidden_size, self.n_interests)

        # parameters initialization
        self.apply(self._init_weights)

    def _check_config(self):
        if self.loss_type not in ("CE", "BPR"):
            raise ConfigError(f"loss_type={self.loss_type!r} is not supported by ComiRec. Fix: CE "
                              "(softmax over all items) or BPR (softmax over RecBole's sampled "
                              "negatives; set train_neg_sample_args).")
        for key in ("n_interests", "embedding_size", "comirec_hidden_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r} must be an integer >= 1. "
                                  f"Fix: --{key}={_SIZE_DEFAULTS[key]}")
        if not isinstance(self.dropout_prob, (int, float)) or not 0.0 <= self.dropout_prob < 1.0:
            raise ConfigError(f"dropout_prob={self.dropout_prob!r} must be a number in [0, 1). "
                              "Fix: --dropout_prob=0.1")

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.xavier_normal_(module.weight.data)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()

    def forward(self, item_seq, item_seq_len):
        """Interests ``[B, K, d]`` of the sequences ``[B, N]`` (RecBole left-aligns items, so
        positions ``>= item_seq_len`` are padding)."""
        positions = torch.arange(item_seq.shape[1], device=item_seq.device)  # [N]
        mask = positions.unsqueeze(0) < item_seq_len.unsqueeze(1)  # [B, N]
        items = self.emb_dropout(self.item_embedding(item_seq))  # [B, N, d]
        keys = items + self.position_embedding(positions).unsqueeze(0)  # [B, N, d]
        attention = self.extractor(keys, mask)  # [B, K, N]
        # As the reference code: positions only steer the attention; the interests are
        # mixtures of item embeddings, so they live in the space they are scored in.
        return attention @ items  # [B, K, d]

    def _interests(self, interaction):
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])

    def _negatives(self, interaction):
        """RecBole's sampled negatives shared by the whole batch ``[B, B]`` (loss_type BPR)."""
        negatives = interaction[self.NEG_ITEM_ID]  # [B]
        return negatives.unsqueeze(0).expand(negatives.shape[0], -1)  # [B, B]

    def calculate_loss(self, interaction):
        interests = self._interests(interaction)  # [B, K, d]
        pos_items = interaction[self.POS_ITEM_ID]  # [B]
        pos_emb = self.item_embedding(pos_items)  # [B, d]
        user = hard_readout(interests, pos_emb)  # [B, d]
        if self.loss_type == "CE":
            logits = user @ self.item_embedding.weight.T  # [B, n_items]
            logits[:, 0] = torch.finfo(logits.dtype).min  # the padding item is no candidate
            return F.cross_entropy(logits, pos_items)
        negatives = self._negatives(interaction)  # [B, S]
        pos_logit = (user * pos_emb).sum(dim=-1, keepdim=True)  # [B, 1]
        neg_logits = torch.einsum("bd,bsd->bs", user, self.item_embedding(negatives))  # [B, S]
        # a negative that is the row's own positive (by id) would fight the positive
        neg_logits = neg_logits.masked_fill(negatives == pos_items.unsqueeze(1),
                                            torch.finfo(neg_logits.dtype).min)
        logits = torch.cat([pos_logit, neg_logits], dim=1)  # [B, 1 + S]
        return F.cross_entropy(logits, torch.zeros_like(pos_items))

    def predict(self, interaction):
        interests = self._interests(interaction)  # [B, K, d]
        items = self.item_embedding(interaction[self.ITEM_ID])  # [B, d]
        return torch.einsum("bkd,bd->bk", interests, items).max(dim=1).values  # [B]

    def full_sort_predict(self, interaction):
        interests = self._interests(interaction)  # [B, K, d]
        # [B, n_items]: inner products, as ComiRec scores
        return max_over_interests(interests, self.item_embedding.weight, normalize=False)
