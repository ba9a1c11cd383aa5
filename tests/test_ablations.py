"""HyMiRec's ablation switches: each variant builds, reads what it claims, and trains."""
import os

import pytest
import torch

from conftest import tiny_hymirec_settings
from recbole_hymirec.config import Config
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.trainer import HyMiRecTrainer
from recbole_hymirec.utils import create_dataset, data_preparation, get_model


def _build_with_loaders(assets, **overrides):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(data_path, llm_path, **overrides))
    train, _, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    model = get_model("HyMiRec")(config, train._dataset)
    return config, model, train, test


def _build_with_config(assets, **overrides):
    config, model, train, test = _build_with_loaders(assets, **overrides)
    return config, model, next(iter(train)), next(iter(test))[0]


def _build(assets, **overrides):
    return _build_with_config(assets, **overrides)[1:]


def _build_with_history(assets, **overrides):
    """``(model, first training batch, the dataset's per-user table)``."""
    _, model, train, _ = _build_with_loaders(assets, **overrides)
    return model, next(iter(train)), train._dataset.user_history


def _llm_context_widths(model, batch):
    """Number of real (non-query) tokens the refiner reads per row."""
    seen = {}
    original = model.refiner.build_inputs

    def spy(coarse, coarse_mask, recent, recent_mask):
        seen["width"] = (coarse_mask.sum(1) + recent_mask.sum(1)).tolist()
        return original(coarse, coarse_mask, recent, recent_mask)

    model.refiner.build_inputs = spy
    model(batch)
    return seen["width"]


def test_without_long_history_the_llm_reads_the_recent_window_only(assets):
    model, batch, _ = _build(assets, use_long_history=False)
    assert not hasattr(model, "lightweight") and not hasattr(model, "coarse_head")
    interests, coarse = model(batch)
    assert coarse is None and interests.shape[1] == model.n_interests
    assert _llm_context_widths(model, batch) == batch["item_length"].tolist()
    loss = model.calculate_loss(batch)
    assert torch.is_tensor(loss) and loss.dim() == 0 and torch.isfinite(loss)


def test_full_history_refiner_reads_the_long_history(assets):
    model, batch, _ = _build(assets, refiner_reads="full_history")
    _, mask = model.long_history_items(batch)
    assert mask.shape[1] > batch["item_id_list"].shape[1]  # long_seq_len > N in the settings
    assert _llm_context_widths(model, batch) == mask.sum(1).tolist()
    assert not hasattr(model, "lightweight")


def test_raw_history_input_bypasses_the_codes(assets):
    codes, batch, _ = _build(assets)
    raw, _, _ = _build(assets, long_history_input="raw")
    items, mask = raw.long_history_items(batch)
    raw_history, _ = raw.long_history(batch)
    code_history, _ = codes.long_history(batch)
    assert torch.equal(raw_history, raw.item_content[items])
    assert torch.equal(code_history, codes.decoded_items(items))
    assert not torch.allclose(raw_history[mask], code_history[mask])  # 8 codewords are lossy


@pytest.mark.parametrize("overrides", [{"n_interests": 1}, {"dmil_window": 1},
                                       {"use_long_history": False},
                                       {"refiner_reads": "full_history"},
                                       {"long_history_input": "raw"},
                                       {"use_id_embedding": True, "use_long_history": False},
                                       {"dense_loss_weight": 1.0, "use_long_history": False},
                                       {"dense_loss_weight": 1.0, "coarse_history": "before_window",
                                        "ranking_readout": "next"},
                                       {"dense_loss_weight": 1.0, "refiner_reads": "full_history",
                                        "loss_masks_seen": True, "mask_seen_items": True},
                                       {"similarity": "dot", "item_bias": True,
                                        "readout_loss_weight": 1.0}])
def test_every_variant_trains(assets, overrides):
    model, batch, test_batch = _build(assets, **overrides)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=0.01)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss = sum(loss) if isinstance(loss, tuple) else loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    model.eval()
    with torch.no_grad():
        assert model.full_sort_predict(test_batch).shape == (len(test_batch), model.n_items)


def test_round_robin_ranking_is_the_merged_per_interest_lists(assets):
    model, _, test_batch = _build(assets, interest_merge="round_robin")
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(test_batch)  # [B, n_items]
        merged = model.recommend_topk(test_batch, 10)
        item_ids = torch.randint(1, model.n_items, (len(test_batch),))
        test_batch.interaction[model.ITEM_ID] = item_ids
        single = model.predict(test_batch)  # [B]
    assert torch.equal(scores.topk(10, dim=1).indices, merged)
    assert torch.equal(single, scores[torch.arange(len(item_ids)), item_ids])


@pytest.mark.parametrize("overrides, message", [
    ({"refiner_reads": "everything"}, "refiner_reads='everything' is not one of ['hybrid', 'full_history']"),
    ({"long_history_input": "bits"}, "long_history_input='bits' is not one of ['codes', 'raw']"),
    ({"item_bias": "no"}, "item_bias='no' must be true or false"),
    ({"dense_loss_weight": -1.0}, "dense_loss_weight=-1.0 must be a number >= 0 (0 = off)"),
    ({"coarse_history": "all"},
     "coarse_history='all' is not one of ['up_to_target', 'before_window']. "
     "Fix: --coarse_history=up_to_target"),
    ({"similarity": "euclid"},
     "similarity='euclid' is not one of ['cosine', 'dot']. Fix: --similarity=cosine"),
    ({"refiner_reads": "full_history", "use_long_history": False},
     "refiner_reads=full_history reads the long history while use_long_history=False drops it"),
    ({"ranking_readout": "last"},
     "ranking_readout='last' is not one of ['interests', 'interests_and_next', 'next']"),
    ({"interest_merge": "sum"},
     "interest_merge='sum' is not one of ['max', 'round_robin']. Fix: --interest_merge=max"),
    ({"ranking_readout": "next"},
     "ranking_readout=next ranks with the last window token's next-item state, which only "
     "dense_loss_weight > 0 trains. Fix: --dense_loss_weight=1.0, or --ranking_readout=interests."),
])
def test_bad_ablation_values_are_named(assets, overrides, message):
    with pytest.raises(ConfigError) as info:
        _build(assets, **overrides)
    assert message in str(info.value)


def test_item_bias_enters_training_and_ranking(assets):
    model, batch, test_batch = _build(assets, item_bias=True)
    assert model.item_bias.shape == (model.n_items,) and model.item_bias.requires_grad
    loss = sum(model.calculate_loss(batch))
    loss.backward()
    assert model.item_bias.grad.abs().sum() > 0  # the loss reads the bias
    model.eval()
    with torch.no_grad():
        before = model.full_sort_predict(test_batch)
        model.item_bias[5] += 100.0
        after = model.full_sort_predict(test_batch)
        assert torch.allclose(after[:, 5] - before[:, 5], torch.full_like(before[:, 5], 100.0))
        others = torch.arange(model.n_items) != 5
        assert torch.allclose(after[:, others], before[:, others])
        assert (model.recommend_topk(test_batch, 3)[:, 0] == 5).all()  # the boosted item leads
        assert model.predict(_with_item(test_batch, 5)).allclose(after[:, 5], atol=1e-4)


def _with_item(batch, item):
    batch = batch[torch.arange(len(batch))]
    batch.interaction["item_id"] = torch.full((len(batch),), item)
    return batch


def test_without_item_bias_scores_stay_cosines(assets):
    model, _, test_batch = _build(assets)
    assert model.item_bias is None
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(test_batch)
    assert scores[:, 1:].abs().max() <= 1.0 + 1e-5


def test_dot_similarity_ranks_by_the_max_dot_product(assets):
    model, _, test_batch = _build(assets, similarity="dot", item_bias=True)
    assert model.dmil.logit_scale().item() == 1.0
    assert not any(name.endswith("log_logit_scale") for name, _ in model.named_parameters())
    model.eval()
    with torch.no_grad():
        model.item_bias.copy_(torch.randn(model.n_items))
        interests, _ = model(test_batch)  # [B, K, d]
        items = model.item_embeddings()  # [n, d]
        expected = torch.einsum("bkd,nd->bkn", interests, items).amax(1) + model.item_bias
        scores = model.full_sort_predict(test_batch)
        assert torch.allclose(scores, expected, atol=1e-4)
        assert scores[:, 1:].abs().max() > 1.0  # not cosines
        assert model.predict(_with_item(test_batch, 5)).allclose(scores[:, 5], atol=1e-4)
        top = model.recommend_topk(test_batch, 1)[:, 0]  # [B] each interest's best, merged
        best_of_first = (interests[:, 0] @ items[1:].T + model.item_bias[1:]).argmax(1) + 1
        assert torch.equal(top, best_of_first)


def test_id_embedding_starts_as_the_content_tower_and_then_learns(assets):
    config, model, batch, _ = _build_with_config(assets, use_id_embedding=True)
    content_only = model.item_tower(model.item_content)  # [n_items, d]
    assert torch.equal(model.item_embeddings(), content_only)
    trainer = HyMiRecTrainer(config, model)
    sum(model.calculate_loss(batch)).backward()
    trainer.optimizer.step()
    moved = model.item_id_embedding.weight.detach()
    assert moved[1:].abs().sum() > 0 and torch.all(moved[0] == 0)  # padding row stays zero


def test_loss_masks_seen_passes_every_item_before_the_target_and_nothing_after(assets):
    model, batch, history = _build_with_history(assets, loss_masks_seen=True, mask_seen_items=True)
    seen = model.seen_items(batch)  # [B, S]
    users, positions = batch["user_id"], batch["target_position"]
    for row, (user, position) in enumerate(zip(users.tolist(), positions.tolist())):
        start = int(history.offsets[user])
        expected = history.items[start:start + position].tolist()
        assert [i for i in seen[row].tolist() if i] == expected
    unmasked_model, _, _ = _build(assets, loss_masks_seen=False,
                                  mask_seen_items=True)  # same seed, same weights
    assert unmasked_model.seen_items(batch) is None
    model.eval(), unmasked_model.eval()  # no dropout: the two losses differ by the mask only
    masked = sum(model.calculate_loss(batch)).item()
    # fewer negatives in every softmax: a strictly lower cross-entropy
    assert masked < sum(unmasked_model.calculate_loss(batch)).item()


def test_loss_masks_seen_without_a_masked_ranking_is_refused(assets):
    with pytest.raises(ConfigError) as info:
        _build(assets, loss_masks_seen=True)
    assert str(info.value) == ("loss_masks_seen=True trains for a ranking that masks seen items, "
                               "but mask_seen_items=False. Fix: --mask_seen_items=True, or "
                               "--loss_masks_seen=False.")


def test_readout_loss_weight_adds_a_weighted_max_over_interests_term(assets):
    model, batch, _ = _build(assets, readout_loss_weight=0.5)
    plain, _, _ = _build(assets)  # same seed, same weights
    model.eval(), plain.eval()  # no dropout: the same interests in both
    losses, plain_losses = model.calculate_loss(batch), plain.calculate_loss(batch)
    assert len(losses) == len(plain_losses) + 1
    for term, plain_term in zip(losses, plain_losses):
        assert term.item() == pytest.approx(plain_term.item(), rel=1e-6)
    interests, _ = model(batch)
    targets = model.target_window(batch)
    readout = model.dmil.readout_loss(interests, targets, model.item_embeddings(),
                                      item_bias=model.item_bias)
    assert losses[-1].item() == pytest.approx(0.5 * readout.item(), rel=1e-6)


@pytest.mark.parametrize("weight", [-1.0, -2])
def test_readout_loss_weight_must_be_a_number_at_least_zero(assets, weight):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(
        data_path, llm_path, readout_loss_weight=weight))
    train, _, _ = data_preparation(config, create_dataset(config))
    with pytest.raises(ConfigError, match=r"readout_loss_weight=.* must be a number >= 0 "
                                          r"\(0 = off\)\. Fix: --readout_loss_weight=1\.0"):
        get_model("HyMiRec")(config, train._dataset)


def test_dense_next_items_follow_the_window_then_the_target(assets):
    model, batch, _ = _build(assets, dense_loss_weight=1.0, coarse_history="before_window")
    items, mask = model._window(batch)  # [B, N], [B, N]
    following = model.dense_next_items(batch, items, mask)  # [B, N]
    for row, length in enumerate(batch["item_length"].tolist()):
        expected = items[row, 1:length].tolist() + [int(batch["item_id"][row])]
        expected += [0] * (items.shape[1] - length)
        assert following[row].tolist() == expected


def test_dense_loss_masks_exactly_the_items_before_each_predicted_one(assets):
    model, batch, history = _build_with_history(assets, dense_loss_weight=0.5,
                                                coarse_history="before_window",
                                                loss_masks_seen=True, mask_seen_items=True)
    model.eval()  # no dropout: the loss is a deterministic function of the batch
    calls = []
    original = model.dmil.readout_loss

    def spy(interests, target_ids, item_emb, neg_ids=None, item_bias=None, seen_ids=None):
        calls.append((target_ids, seen_ids))
        return original(interests, target_ids, item_emb, neg_ids, item_bias, seen_ids)

    model.dmil.readout_loss = spy
    losses = model.calculate_loss(batch)
    assert len(losses) == 3 and all(torch.isfinite(term) for term in losses)  # DMIL, coarse, dense
    targets, seen = calls[-1]  # [B * T, 1], [B * T, S]: every window slot, row by row
    lengths = batch["item_length"]
    window, row_targets = batch["item_id_list"], model.target_window(batch)  # [B, T], [B, W]
    real = (torch.arange(window.shape[1]) < lengths.unsqueeze(1)).reshape(-1)  # [B * T]
    assert torch.equal(targets[:, 0] > 0, real)  # every window token predicts, padding nothing
    targets, seen = targets[real], seen[real]  # [V, 1], [V, S]
    rows = torch.repeat_interleave(torch.arange(len(lengths)), lengths)  # [V]
    slots = torch.cat([torch.arange(int(length)) for length in lengths])  # [V]
    co_width = window.shape[1] + row_targets.shape[1]  # the co-positives follow the seen items
    for v, (row, slot) in enumerate(zip(rows.tolist(), slots.tolist())):
        start = int(history.offsets[batch["user_id"][row]])
        predicted = int(batch["target_position"][row] - lengths[row]) + slot + 1  # user position
        assert targets[v, 0] == history.items[start + predicted]
        before = seen[v, :-co_width].tolist()
        assert [i for i in before if i] == history.items[start:start + predicted].tolist()
        later = window[row, slot + 1:].tolist()
        assert seen[v, -co_width:].tolist() == [0] * (slot + 1) + later + row_targets[row].tolist()
    assert torch.isclose(losses[2], 0.5 * original(*_dense_inputs(model, batch, history)))


def _dense_inputs(model, batch, history):
    """The dense loss's arguments rebuilt by hand from the window outputs."""
    _, _, (items, mask, outputs) = model._user_side(batch, with_recent=True)
    following = model.dense_next_items(batch, items, mask)
    rows, slots = following.nonzero(as_tuple=True)
    users, positions = batch["user_id"], batch["target_position"]
    before = positions[rows] - batch["item_length"][rows] + slots + 1
    seen = history.before(users[rows], before)
    co_positives = model.dense_co_positives(items, model.target_window(batch), rows, slots)
    return (outputs[rows, slots].unsqueeze(1), following[rows, slots].unsqueeze(1),
            model.item_embeddings(), None, model.item_bias, torch.cat([seen, co_positives], 1))


def test_dense_loss_needs_the_history_before_the_window_with_the_lightweight_branch(assets):
    with pytest.raises(ConfigError) as info:
        _build(assets, dense_loss_weight=1.0)
    assert str(info.value) == ("dense_loss_weight > 0 trains each window token to predict the "
                               "next item, but the window reads the coarse interests, built from "
                               "a history that holds that item. Fix: "
                               "--coarse_history=before_window, or --dense_loss_weight=0.")
    model, batch, _ = _build(assets, dense_loss_weight=1.0, use_long_history=False)
    assert len(model.calculate_loss(batch)) == 2  # no coarse tokens to leak: DMIL + dense


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_ranking_readouts_take_the_max_over_the_vectors_they_name(assets, similarity):
    dense = dict(dense_loss_weight=1.0, coarse_history="before_window", similarity=similarity,
                 item_bias=True)
    model, _, test_batch = _build(assets, **dense)
    model.eval()
    with torch.no_grad():
        model.item_bias.normal_()  # a bias that is not zero must be added in every readout
        interests, _, (items, _, outputs) = model._user_side(test_batch, with_recent=True)
        last = outputs[torch.arange(len(items)), test_batch["item_length"] - 1]  # [B, d]
        item_emb = model.item_embeddings()
        if similarity == "cosine":
            interests, last = torch.nn.functional.normalize(interests, dim=-1), \
                torch.nn.functional.normalize(last, dim=-1)
            item_emb = torch.nn.functional.normalize(item_emb, dim=-1)
        by_interest = torch.einsum("bkd,nd->bkn", interests, item_emb).max(dim=1).values  # [B, n]
        by_next = last @ item_emb.T  # [B, n]
        expected = {"interests": by_interest, "next": by_next,
                    "interests_and_next": torch.maximum(by_interest, by_next)}
        for readout, scores in expected.items():
            model.ranking_readout = readout
            logits = model.dmil.logit_scale() * scores + model.item_bias if similarity == "cosine" \
                else scores + model.item_bias
            assert torch.allclose(model.full_sort_predict(test_batch), logits, atol=1e-4), readout
        assert not torch.allclose(by_next, by_interest, atol=1e-3)  # the readouts differ
        model.ranking_readout = "interests_and_next"
        assert model.ranking_interests(test_batch).shape == (len(items), model.n_interests + 1,
                                                             model.embedding_size)


def test_coarse_history_before_window_ends_where_the_window_starts(assets):
    model, batch, history = _build_with_history(assets, dense_loss_weight=1.0,
                                                coarse_history="before_window")
    coarse_items, coarse_mask = model.coarse_history_items(batch)  # [B, L], [B, L]
    window_items, window_mask = model._window(batch)  # [B, N], [B, N]
    for row in range(len(coarse_items)):
        start = int(history.offsets[batch["user_id"][row]])
        target = int(batch["target_position"][row])
        coarse = coarse_items[row][coarse_mask[row]].tolist()
        window = window_items[row][window_mask[row]].tolist()
        # coarse then window: the items right before the target, in order, none in both
        assert coarse + window == history.items[start + target - len(coarse) - len(window):
                                                start + target].tolist()
        assert len(window) == int(batch["item_length"][row])
        assert len(coarse) == min(model.long_seq_len, target - len(window))
    default, default_batch, _ = _build(assets)
    assert torch.equal(default_batch["target_position"], batch["target_position"])  # same rows
    _, default_mask = default.coarse_history_items(default_batch)
    assert default_mask.sum() > coarse_mask.sum()  # up_to_target also reads the window's items
    with pytest.raises(ConfigError, match="the batch has no field 'long_history_id_list'"):
        default.coarse_history_items(batch)  # a batch built for the other history


def test_weight_decay_reaches_the_weight_matrices_only(assets):
    config, model, _, _ = _build_with_config(assets, learner="adamw", weight_decay=0.1,
                                             item_bias=True, use_id_embedding=True)
    decayed_group, kept_group = HyMiRecTrainer(config, model).optimizer.param_groups
    assert decayed_group["weight_decay"] == 0.1 and kept_group["weight_decay"] == 0.0
    ids = {id(p): name for name, p in model.named_parameters()}
    decayed = {ids[id(p)] for p in decayed_group["params"]}
    kept = {ids[id(p)] for p in kept_group["params"]}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert decayed | kept == trainable and not decayed & kept
    assert any("lora_A" in name for name in decayed) and any("lora_B" in name for name in decayed)
    assert {"item_tower.weight", "item_to_llm.linear.weight", "coarse_to_llm.linear.weight",
            "item_id_embedding.weight"} <= decayed
    assert {"item_bias", "dmil.log_logit_scale", "refiner.interest_queries",
            "lightweight.queries", "item_tower.bias"} <= kept
    assert all(name.endswith("bias") or "norm" in name for name in kept
               if name not in {"item_bias", "dmil.log_logit_scale", "refiner.interest_queries",
                               "lightweight.queries"})
    assert any("norm" in name for name in kept)
    assert all(model.get_parameter(name).dim() >= 2 for name in decayed)
