"""HyMiRec's ablation switches: each variant builds, reads what it claims, and trains."""
import os

import pytest
import torch
from recbole.data import data_preparation

from conftest import tiny_hymirec_settings
from recbole_hymirec.config import Config
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.trainer import HyMiRecTrainer
from recbole_hymirec.utils import create_dataset, get_model


def _build_with_config(assets, **overrides):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(data_path, llm_path, **overrides))
    train, _, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    model = get_model("HyMiRec")(config, train._dataset)
    return config, model, next(iter(train)), next(iter(test))[0]


def _build(assets, **overrides):
    return _build_with_config(assets, **overrides)[1:]


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
                                       {"use_id_embedding": True, "history_ids": True,
                                        "use_long_history": False},
                                       {"dense_loss_weight": 1.0, "context_order": "recent_first"},
                                       {"dense_loss_weight": 1.0, "coarse_history": "before_window",
                                        "ranking_readout": "next"},
                                       {"dense_loss_weight": 1.0, "refiner_reads": "full_history",
                                        "loss_masks_seen": True},
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


@pytest.mark.parametrize("overrides, message", [
    ({"refiner_reads": "everything"}, "refiner_reads='everything' is not one of ['hybrid', 'full_history']"),
    ({"long_history_input": "bits"}, "long_history_input='bits' is not one of ['codes', 'raw']"),
    ({"item_bias_init": "ones"}, "item_bias_init='ones' is not one of ['zeros', 'popularity']"),
    ({"item_bias": "no"}, "item_bias='no' must be true or false"),
    ({"item_bias": True, "item_bias_lr": -0.1}, "item_bias_lr=-0.1 must be a number > 0"),
    ({"context_order": "queries_first"},
     "context_order='queries_first' is not one of ['coarse_first', 'recent_first']"),
    ({"dense_loss_weight": -1.0}, "dense_loss_weight=-1.0 must be a number >= 0 (0 = off)"),
    ({"coarse_history": "all"},
     "coarse_history='all' is not one of ['up_to_target', 'before_window']. "
     "Fix: --coarse_history=up_to_target"),
    ({"similarity": "euclid"},
     "similarity='euclid' is not one of ['cosine', 'dot']. Fix: --similarity=cosine"),
    ({"history_ids": True},
     "history_ids=True feeds the item tower's ID embeddings to the user side, but "
     "use_id_embedding=False. Fix: --use_id_embedding=True"),
    ({"refiner_reads": "full_history", "use_long_history": False},
     "refiner_reads=full_history reads the long history while use_long_history=False drops it"),
    ({"ranking_readout": "last"},
     "ranking_readout='last' is not one of ['interests', 'interests_and_next', 'next']"),
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


def test_item_bias_lr_gives_the_bias_its_own_step_size(assets):
    config, model, batch, _ = _build_with_config(assets, item_bias=True, item_bias_lr=0.5)
    trainer = HyMiRecTrainer(config, model)
    others, bias_group = trainer.optimizer.param_groups
    assert bias_group["params"] == [model.item_bias] and bias_group["lr"] == 0.5
    assert others["lr"] == config["learning_rate"]
    assert all(p is not model.item_bias for p in others["params"])
    start = model.item_bias.detach().clone()
    sum(model.calculate_loss(batch)).backward()
    trainer.optimizer.step()
    # Adam's first step moves every parameter with a gradient by about its group's lr
    moved = (model.item_bias.detach() - start).abs()
    assert moved.max() == pytest.approx(0.5, rel=0.01)


def test_without_item_bias_lr_one_group_trains_everything(assets):
    config, model, _, _ = _build_with_config(assets, item_bias=True)
    groups = HyMiRecTrainer(config, model).optimizer.param_groups
    assert len(groups) == 1 and any(p is model.item_bias for p in groups[0]["params"])


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


def test_history_ids_start_as_the_content_model_and_then_read_ids(assets):
    config, model, batch, _ = _build_with_config(assets, use_id_embedding=True, history_ids=True)
    id_to_llm, code_embedding = model.id_to_llm, model.code_embedding
    model.eval()
    with torch.no_grad():
        start = model(batch)[0]
        model.id_to_llm = model.code_embedding = None  # the user side without its ID terms
        content_only = model(batch)[0]
    assert torch.allclose(start, content_only, atol=1e-6)  # both tables start at zero
    model.train()
    model.id_to_llm, model.code_embedding = id_to_llm, code_embedding
    trainer = HyMiRecTrainer(config, model)
    sum(model.calculate_loss(batch)).backward()
    history_items, mask = model.long_history_items(batch)
    used_rows = (model.item_codes[history_items[mask]].long()
                 + code_embedding.layer_offsets).unique()  # [n] flat table rows the batch read
    grad = code_embedding.table.weight.grad
    assert grad[used_rows].abs().sum(1).gt(0).all()  # every code the long history holds learns
    unused = torch.ones(len(grad), dtype=torch.bool)
    unused[used_rows] = False
    assert grad[unused].abs().sum() == 0  # and nothing else
    trainer.optimizer.step()
    model.eval()
    with torch.no_grad():
        trained = model(batch)[0]
        model.id_to_llm = None
        without_window_ids = model(batch)[0]
        model.id_to_llm, model.code_embedding = id_to_llm, None
        without_code_ids = model(batch)[0]
    assert not torch.allclose(trained, without_window_ids, atol=1e-5)  # the window reads IDs
    assert not torch.allclose(trained, without_code_ids, atol=1e-5)  # the long history reads codes


def test_history_ids_leave_the_other_layers_initial_weights_alone(assets):
    _, plain, _, _ = _build_with_config(assets, use_id_embedding=True)
    _, with_ids, _, _ = _build_with_config(assets, use_id_embedding=True, history_ids=True)
    added = ("code_embedding.", "id_to_llm.")
    plain_state = plain.checkpoint_state_dict()
    for name, value in with_ids.checkpoint_state_dict().items():
        if not name.startswith(added):
            assert torch.equal(value, plain_state[name]), name
    assert set(with_ids.checkpoint_state_dict()) - set(plain_state) == {
        "code_embedding.table.weight", "id_to_llm.weight"}


def test_code_embedding_sums_one_vector_per_layer():
    from recbole_hymirec.model.code_embedding import CodeEmbedding
    embedding = CodeEmbedding(n_layers=2, codebook_size=3, dim=4)
    with torch.no_grad():
        embedding.table.weight.copy_(torch.arange(24.0).reshape(6, 4))
    codes = torch.tensor([[[0, 0], [2, 1]]], dtype=torch.uint8)  # [1, 2, L]
    out = embedding(codes)  # [1, 2, 4]
    expected = torch.stack([torch.arange(0.0, 4) + torch.arange(12.0, 16),  # rows 0 and 3
                            torch.arange(8.0, 12) + torch.arange(16.0, 20)])  # rows 2 and 4
    assert torch.equal(out[0], expected)
    with pytest.raises(ValueError, match="codes have 3 columns, the code embedding 2 layers"):
        embedding(torch.zeros(1, 3, dtype=torch.long))


def test_item_bias_starts_at_log_training_popularity(assets):
    model, _, _ = _build(assets, item_bias=True, item_bias_init="popularity")
    bias = model.item_bias.detach()
    dataset_counts = torch.zeros(model.n_items)
    for item, count in _train_counter(assets).items():
        dataset_counts[int(item)] = count
    order = dataset_counts[1:].argsort()
    assert dataset_counts.sum() > 0
    assert torch.all(bias[1:][order].diff() >= -1e-6)  # more training interactions, larger bias
    assert abs(float(bias[1:].mean())) < 1e-5  # centred on the real items


def _train_counter(assets):
    data_path, llm_path, _ = assets
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(data_path, llm_path))
    train, _, _ = data_preparation(config, create_dataset(config))
    return train._dataset.item_counter


def test_loss_masks_seen_passes_every_item_before_the_target_and_nothing_after(assets):
    model, batch, _ = _build(assets, loss_masks_seen=True)
    seen = model.seen_items(batch)  # [B, S]
    users, positions = batch["user_id"], batch["target_position"]
    history = model.user_history
    for row, (user, position) in enumerate(zip(users.tolist(), positions.tolist())):
        start = int(history.offsets[user])
        expected = history.items[start:start + position].tolist()
        assert [i for i in seen[row].tolist() if i] == expected
    unmasked_model, _, _ = _build(assets, loss_masks_seen=False)  # same seed, same weights
    assert unmasked_model.seen_items(batch) is None
    model.eval(), unmasked_model.eval()  # no dropout: the two losses differ by the mask only
    masked = sum(model.calculate_loss(batch)).item()
    # fewer negatives in every softmax: a strictly lower cross-entropy
    assert masked < sum(unmasked_model.calculate_loss(batch)).item()


@pytest.mark.parametrize("rotate", [True, False])
def test_train_stride_rotate_moves_each_epoch_to_the_next_phase(assets, rotate):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    config = Config("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(
        data_path, llm_path, train_stride=2, train_stride_rotate=rotate))
    train, _, _ = data_preparation(config, create_dataset(config))
    trainer = HyMiRecTrainer(config, get_model("HyMiRec")(config, train._dataset))
    history = train._dataset.user_history

    def phases(loader):
        rows = [batch for batch in loader]
        users = torch.cat([b["user_id"] for b in rows])
        positions = torch.cat([b["target_position"] for b in rows])
        return ((history.train_end[users] - 1 - positions) % 2).unique().tolist()

    assert trainer._epoch_train_data(train, 0) is train and phases(train) == [0]
    assert phases(trainer._epoch_train_data(train, 1)) == ([1] if rotate else [0])
    assert trainer._epoch_train_data(train, 2) is train
    trained_on = []
    calculate_loss = trainer.model.calculate_loss
    trainer.model.calculate_loss = lambda batch: trained_on.append(batch) or calculate_loss(batch)
    trainer._train_epoch(train, 1)  # RecBole's loop runs on the phase's loader
    assert phases(trained_on) == ([1] if rotate else [0])
    if rotate:  # built once: a later epoch of the same phase reuses it (its shuffle moves on)
        assert trainer._epoch_train_data(train, 3) is trainer._epoch_train_data(train, 1)


def test_train_stride_rotate_without_a_stride_is_refused(assets):
    with pytest.raises(ConfigError, match=r"train_stride_rotate=True rotates the phases of a "
                                          r"strided training split, but train_stride=1"):
        _build(assets, train_stride=1, train_stride_rotate=True)


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


def test_history_item_dropout_hides_items_in_training_only_and_keeps_the_last(assets):
    model, batch, _ = _build(assets, history_item_dropout=0.5)
    model.eval()
    _, full_window = model._window(batch)  # [B, N]
    _, full_history = model.long_history_items(batch)  # [B, L]
    assert full_window.sum(dim=1).equal(batch["item_length"])  # evaluation: nothing hidden
    model.train()
    torch.manual_seed(0)
    _, window = model._window(batch)
    _, history = model.long_history_items(batch)
    for kept, full in ((window, full_window), (history, full_history)):
        assert not (kept & ~full).any()  # only real items can be kept
        assert kept.sum() < full.sum()  # some were hidden (p = 0.5 over the batch)
        last = full.sum(dim=1) - 1  # [B] (left-aligned)
        assert kept.gather(1, last.unsqueeze(1)).all()  # the most recent one never is
    assert _llm_context_widths(model, batch) != _llm_context_widths(model.eval(), batch)
    model.train()
    loss = model.calculate_loss(batch)
    assert all(torch.isfinite(term) for term in loss)


@pytest.mark.parametrize("rate", [1.0, -0.1])
def test_history_item_dropout_must_be_below_one(assets, rate):
    with pytest.raises(ConfigError, match=r"history_item_dropout=.* must be a number in \[0, 1\) "
                                          r"\(0 = off\)\. Fix: --history_item_dropout=0\.2"):
        _build(assets, history_item_dropout=rate)


def test_dense_next_items_follow_the_window_then_the_target(assets):
    model, batch, _ = _build(assets, dense_loss_weight=1.0, context_order="recent_first")
    items, mask = model._window(batch)  # [B, N], [B, N]
    mask = mask.clone()
    mask[0, 0] = False  # a token hidden by history_item_dropout predicts nothing
    following = model.dense_next_items(batch, items, mask)  # [B, N]
    for row, length in enumerate(batch["item_length"].tolist()):
        expected = items[row, 1:length].tolist() + [int(batch["item_id"][row])]
        expected += [0] * (items.shape[1] - length)
        if row == 0:
            expected[0] = 0
        assert following[row].tolist() == expected


def test_dense_loss_masks_exactly_the_items_before_each_predicted_one(assets):
    model, batch, _ = _build(assets, dense_loss_weight=0.5, context_order="recent_first",
                             loss_masks_seen=True)
    model.eval()  # no dropout: the loss is a deterministic function of the batch
    calls = []
    original = model.dmil.readout_loss

    def spy(interests, target_ids, item_emb, neg_ids=None, item_bias=None, seen_ids=None):
        calls.append((target_ids, seen_ids))
        return original(interests, target_ids, item_emb, neg_ids, item_bias, seen_ids)

    model.dmil.readout_loss = spy
    losses = model.calculate_loss(batch)
    assert len(losses) == 3 and all(torch.isfinite(term) for term in losses)  # DMIL, coarse, dense
    targets, seen = calls[-1]  # [V, 1], [V, S]
    assert len(targets) == int(batch["item_length"].sum())  # every window token predicts
    history, lengths = model.user_history, batch["item_length"]
    rows = torch.repeat_interleave(torch.arange(len(lengths)), lengths)  # [V]
    slots = torch.cat([torch.arange(int(length)) for length in lengths])  # [V]
    window, row_targets = batch["item_id_list"], model.target_window(batch)  # [B, T], [B, W]
    co_width = window.shape[1] + row_targets.shape[1]  # the co-positives follow the seen items
    for v, (row, slot) in enumerate(zip(rows.tolist(), slots.tolist())):
        start = int(history.offsets[batch["user_id"][row]])
        predicted = int(batch["target_position"][row] - lengths[row]) + slot + 1  # user position
        assert targets[v, 0] == history.items[start + predicted]
        before = seen[v, :-co_width].tolist()
        assert [i for i in before if i] == history.items[start:start + predicted].tolist()
        later = window[row, slot + 1:].tolist()
        assert seen[v, -co_width:].tolist() == [0] * (slot + 1) + later + row_targets[row].tolist()
    assert torch.isclose(losses[2], 0.5 * original(*_dense_inputs(model, batch)))


def _dense_inputs(model, batch):
    """The dense loss's arguments rebuilt by hand from the window outputs."""
    _, _, (items, mask, outputs) = model._user_side(batch, with_recent=True)
    following = model.dense_next_items(batch, items, mask)
    rows, slots = following.nonzero(as_tuple=True)
    users, positions = batch["user_id"], batch["target_position"]
    before = positions[rows] - batch["item_length"][rows] + slots + 1
    seen = model.user_history.before(users[rows], before)
    co_positives = model.dense_co_positives(items, model.target_window(batch), rows, slots)
    return (outputs[rows, slots].unsqueeze(1), following[rows, slots].unsqueeze(1),
            model.item_embeddings(), None, model.item_bias, torch.cat([seen, co_positives], 1))


def test_dense_loss_needs_the_recent_first_order_with_the_lightweight_branch(assets):
    with pytest.raises(ConfigError, match=r"dense_loss_weight > 0 trains each window token to "
                                          r"predict the next item, but with context_order="
                                          r"coarse_first .* Fix: --coarse_history=before_window, "
                                          r"--context_order=recent_first, or "
                                          r"--dense_loss_weight=0\."):
        _build(assets, dense_loss_weight=1.0)
    model, batch, _ = _build(assets, dense_loss_weight=1.0, use_long_history=False)
    assert len(model.calculate_loss(batch)) == 2  # no coarse tokens to leak: DMIL + dense


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_ranking_readouts_take_the_max_over_the_vectors_they_name(assets, similarity):
    dense = dict(dense_loss_weight=1.0, context_order="recent_first", similarity=similarity,
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
    model, batch, _ = _build(assets, dense_loss_weight=1.0, coarse_history="before_window")
    assert model.context_order == "coarse_first"  # the method's order, allowed without a leak
    coarse_items, coarse_mask = model.coarse_history_items(batch)  # [B, L], [B, L]
    window_items, window_mask = model._window(batch)  # [B, N], [B, N]
    history = model.user_history
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
    default_items, default_mask = _build(assets)[0].coarse_history_items(batch)
    assert default_mask.sum() > coarse_mask.sum()  # up_to_target also reads the window's items
