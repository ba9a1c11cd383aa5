"""Optional stage-1 fine-tuning of the content encoder (off by default; meant for a GPU).

The paper trains the item encoder end to end with the recommendation loss before freezing
it. Here: LoRA on the encoder's LLM + its learnable special token, trained with a next-item
contrastive loss: for consecutive training items (a -> b) of a user, the embedding of a's
text must pick b's text among the batch's next items (in-batch InfoNCE). A next item that
appears twice in a batch is masked by id, never by a cosine threshold.
"""
import logging

import torch
import torch.nn.functional as F
from tqdm import tqdm

from recbole_hymirec.model.lora import as_module_list, inject_lora

logger = logging.getLogger(__name__)


def next_item_pairs(user_history):
    """``[P, 2]`` (item, next item) pairs inside every user's training part."""
    items, offsets, train_end = user_history.items, user_history.offsets, user_history.train_end
    starts = offsets[:-1]  # [U]
    # a pair (t, t + 1) is in the training part when t + 1 < train_end
    n_pairs = (train_end - 1).clamp(min=0)  # [U]
    user_of_pair = torch.repeat_interleave(torch.arange(len(n_pairs)), n_pairs)  # [P]
    first_pair = torch.cumsum(n_pairs, 0) - n_pairs  # [U]
    step = torch.arange(int(n_pairs.sum())) - first_pair[user_of_pair]  # [P]
    index = starts[user_of_pair] + step  # [P]
    return torch.stack([items[index], items[index + 1]], dim=1)


def in_batch_next_item_loss(anchor, positive, positive_ids, logit_scale):
    """InfoNCE of each anchor against the batch's next items, duplicates masked by id."""
    logits = logit_scale * F.normalize(anchor, dim=-1) @ F.normalize(positive, dim=-1).T  # [B, B]
    same_item = positive_ids.unsqueeze(0) == positive_ids.unsqueeze(1)  # [B, B]
    eye = torch.eye(len(positive_ids), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same_item & ~eye, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(positive_ids), device=logits.device))


def _embed(encoder, texts, item_ids):
    input_ids, lengths = encoder.tokenize([texts[i] for i in item_ids.tolist()])
    return encoder(input_ids, lengths)  # [B, D]


def finetune_encoder(encoder, texts, pairs, epochs=1, batch_size=32, learning_rate=1e-4,
                     lora_r=8, lora_alpha=16, lora_target_modules=("q_proj", "v_proj"),
                     temperature=0.07, seed=2020, show_progress=True):
    """Train LoRA adapters + the special token of ``encoder`` in place; returns mean losses.

    Args:
        encoder: a :class:`ContentEncoder` (its backbone frozen apart from the new adapters).
        texts: one text per item id.
        pairs: ``[P, 2]`` (item, next item) ids, e.g. from :func:`next_item_pairs`.
    """
    inject_lora(encoder.backbone, lora_r, lora_alpha, 0.0, as_module_list(lora_target_modules))
    encoder.special_token.requires_grad_(True)
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    encoder.train()
    epoch_losses = []
    for epoch in range(epochs):
        order = torch.randperm(len(pairs), generator=generator)
        batches = order.split(batch_size)
        total = 0.0
        for batch in tqdm(batches, desc=f"encoder fine-tuning {epoch}", disable=not show_progress):
            anchor_ids, positive_ids = pairs[batch, 0], pairs[batch, 1]
            loss = in_batch_next_item_loss(_embed(encoder, texts, anchor_ids),
                                           _embed(encoder, texts, positive_ids),
                                           positive_ids.to(encoder.device), 1.0 / temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        epoch_losses.append(total / max(len(batches), 1))
        logger.info("encoder fine-tuning epoch %d: loss %.4f", epoch, epoch_losses[-1])
    encoder.eval()
    return epoch_losses
