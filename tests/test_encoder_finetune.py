"""Optional stage-1 fine-tuning of the content encoder."""
import torch

from conftest import tiny_hymirec_settings
from tiny_llm import make_tiny_llm
from recbole_hymirec.config import Config
from recbole_hymirec.data.dataset import UserHistory
from recbole_hymirec.model.content_encoder import ContentEncoder
from recbole_hymirec.model.encoder_finetune import (finetune_encoder, in_batch_next_item_loss,
                                                    next_item_pairs)
from recbole_hymirec.model.item_codes import build_item_codes
from recbole_hymirec.model.llm import load_causal_lm
from recbole_hymirec.utils import create_dataset


def test_pairs_stay_inside_the_training_part():
    # user 1: items 5 6 7 8 9 with train_end 3 -> pairs (5,6), (6,7); user 2: 3 items, train_end 1
    history = UserHistory(torch.tensor([5, 6, 7, 8, 9, 1, 2, 3]), torch.tensor([0, 0, 5, 8]))
    history.train_end = torch.tensor([0, 3, 1])
    assert next_item_pairs(history).tolist() == [[5, 6], [6, 7]]


def test_duplicate_next_items_are_masked_by_id_not_by_cosine():
    same = torch.ones(3, 4)
    loss = in_batch_next_item_loss(same, same, torch.tensor([7, 7, 7]), 10.0)
    assert loss.item() == 0.0  # all three positives are the same item: nothing to contrast
    assert in_batch_next_item_loss(same, same, torch.tensor([1, 2, 3]), 10.0).item() > 1.0


def test_finetuning_lowers_the_loss_and_trains_only_adapters(tmp_path):
    make_tiny_llm(str(tmp_path / "llm"))
    model, tokenizer, _ = load_causal_lm(str(tmp_path / "llm"))
    frozen = model.model.layers[0].mlp.up_proj.weight.clone()
    encoder = ContentEncoder(model, tokenizer, max_text_len=16)
    texts = ["pad"] + [f"movie {i} genre {'ab'[i % 2]}" for i in range(1, 9)]
    pairs = torch.tensor([[i, i + 2] for i in range(1, 7)])  # next item shares the genre
    before = encoder.encode(texts, show_progress=False)
    losses = finetune_encoder(encoder, texts, pairs, epochs=15, batch_size=6, learning_rate=0.01,
                              lora_r=4, show_progress=False)
    assert losses[-1] < losses[0]
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, frozen)
    assert not torch.allclose(encoder.encode(texts, show_progress=False), before)


def test_finetuned_embeddings_get_their_own_cache_entry(tiny_data_path, tmp_path):
    make_tiny_llm(str(tmp_path / "llm"))
    base = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"))
    frozen_config = Config("HyMiRec", "tiny", config_dict=base)
    train = create_dataset(frozen_config).build()[0]
    frozen = build_item_codes(frozen_config, train)
    tuned_config = Config("HyMiRec", "tiny", config_dict=dict(base, encoder_finetune_epochs=1))
    tuned = build_item_codes(tuned_config, train)
    assert tuned.stats["cache_hit"] is False  # a different key, not the frozen embeddings
    assert not torch.allclose(tuned.embeddings, frozen.embeddings)
    assert build_item_codes(tuned_config, train).stats["cache_hit"] is True
