"""DMIL: cosine k-means of the target window, Hungarian matching to interests, the contrastive
loss (id masking, padding, scale cap), a training sanity check, and multi-interest retrieval."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.dmil import (
    DMILLoss,
    assign_targets_to_interests,
    match_clusters_to_interests,
)
from recbole_hymirec.model.kmeans import cosine_kmeans
from recbole_hymirec.model.retrieval import (max_over_interests, merge_topk,
                                             round_robin_scores, score_items, unit_rows)


def unit(x):
    return F.normalize(x, dim=-1)


def planted_groups(n_rows, n_groups, per_group, dim, noise=0.05, seed=0):
    """Rows of ``n_groups * per_group`` targets around random directions, shuffled per row."""
    g = torch.Generator().manual_seed(seed)
    directions = unit(torch.randn(n_rows, n_groups, dim, generator=g))  # [B, G, d]
    labels = torch.arange(n_groups).repeat_interleave(per_group)  # [W]
    labels = torch.stack([labels[torch.randperm(len(labels), generator=g)] for _ in range(n_rows)])
    x = directions.gather(1, labels.unsqueeze(-1).expand(-1, -1, dim))  # [B, W, d]
    x = x + noise * torch.randn(x.shape, generator=g)
    return x, labels


def same_partition(a, b):
    """True when the two label vectors split the items identically (up to label names)."""
    return all((a[i] == a[j]) == (b[i] == b[j]) for i in range(len(a)) for j in range(len(a)))


# --------------------------------------------------------------------------- k-means

def test_kmeans_recovers_planted_groups():
    x, labels = planted_groups(n_rows=16, n_groups=3, per_group=4, dim=8)
    valid = torch.ones(labels.shape, dtype=torch.bool)
    assign, centres, k_per_row = cosine_kmeans(x, valid, n_clusters=3)
    assert k_per_row.tolist() == [3] * 16
    for row in range(16):
        assert same_partition(assign[row].tolist(), labels[row].tolist())
    assert torch.allclose(centres.norm(dim=-1), torch.ones(16, 3), atol=1e-5)


def test_kmeans_clusters_per_row_and_invalid_targets():
    torch.manual_seed(0)
    x = torch.randn(4, 5, 6)
    valid = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 1, 0, 1]]).bool()
    assign, centres, k_per_row = cosine_kmeans(x, valid, n_clusters=3)
    assert k_per_row.tolist() == [3, 2, 0, 3]
    assert (assign[~valid] == -1).all()
    for row, k in enumerate(k_per_row.tolist()):
        assert ((assign[row][valid[row]] >= 0) & (assign[row][valid[row]] < k)).all()
        assert (centres[row, k:] == 0).all()
    # fewer targets than clusters: every target is its own cluster
    assert sorted(assign[1, :2].tolist()) == [0, 1]
    assert sorted(assign[3, [0, 2, 4]].tolist()) == [0, 1, 2]


def test_kmeans_is_deterministic_and_copes_with_duplicate_targets():
    x = torch.ones(1, 3, 4)  # three identical targets, three clusters wanted
    assign, centres, _ = cosine_kmeans(x, torch.ones(1, 3, dtype=torch.bool), n_clusters=3)
    assert torch.isfinite(centres).all()
    assert len(set(assign[0].tolist())) == 1
    y, _ = planted_groups(4, 2, 3, 5, noise=0.5, seed=3)
    v = torch.ones(4, 6, dtype=torch.bool)
    first, second = cosine_kmeans(y, v, 2), cosine_kmeans(y, v, 2)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_seed_cosine_cap_gives_a_one_theme_window_one_cluster():
    # row 0: one theme; row 1: two themes; row 2: three themes (12 targets each)
    x = torch.cat([planted_groups(1, n, 12 // n, 8, noise=0.05, seed=n)[0] for n in (1, 2, 3)])
    valid = torch.ones(3, 12, dtype=torch.bool)
    _, _, uncapped = cosine_kmeans(x, valid, n_clusters=4)
    assert uncapped.tolist() == [4, 4, 4]  # the method: K pieces whatever the window
    assign, centres, capped = cosine_kmeans(x, valid, n_clusters=4, max_seed_cosine=0.5)
    assert capped.tolist() == [1, 2, 3]
    for row, k in enumerate(capped.tolist()):
        assert set(assign[row].tolist()) == set(range(k))
        assert (centres[row, k:] == 0).all()


def test_seed_cosine_cap_leaves_the_other_interests_untrained():
    g = torch.Generator().manual_seed(0)
    item_emb = unit(torch.randn(30, 8, generator=g))
    item_emb[1:6] = unit(item_emb[1] + 0.05 * torch.randn(5, 8, generator=g))  # one theme
    targets = torch.tensor([[1, 2, 3, 4, 5, 1]])
    grads = []
    for cap in (None, 0.5):
        interests = torch.randn(1, 4, 8, generator=g, requires_grad=True)
        DMILLoss(cluster_max_cosine=cap)(interests, targets, item_emb).backward()
        grads.append((interests.grad[0].abs().sum(-1) > 0).sum().item())
    assert grads == [4, 1]  # every interest pulled to the theme, or only the matched one


@pytest.mark.parametrize("value", [1.5, -1, True, "0.5"])
def test_loss_rejects_a_bad_cluster_cosine(value):
    with pytest.raises(ConfigError, match=r"dmil_cluster_max_cosine=.* must be a cosine in \(-1, 1\]"):
        DMILLoss(cluster_max_cosine=value)


def test_kmeans_rejects_bad_cluster_count():
    with pytest.raises(ConfigError, match=">= 1"):
        cosine_kmeans(torch.randn(1, 2, 3), torch.ones(1, 2, dtype=torch.bool), n_clusters=0)


# --------------------------------------------------------------------------- Hungarian

def at_angle(degrees):
    return torch.tensor([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))])


def test_hungarian_beats_greedy_on_a_handmade_example():
    # both clusters are closest to interest 0: greedy argmax would give them the same interest
    centres = torch.stack([at_angle(10), at_angle(40)]).unsqueeze(0)  # [1, 2, 2]
    interests = torch.stack([at_angle(0), at_angle(90)]).unsqueeze(0)  # [1, 2, 2]
    greedy = (centres @ interests.transpose(1, 2)).argmax(-1)
    assert greedy.tolist() == [[0, 0]]
    matched = match_clusters_to_interests(centres, torch.tensor([2]), interests)
    assert matched.tolist() == [[0, 1]]


def test_hungarian_is_optimal_and_distinct_against_brute_force():
    g = torch.Generator().manual_seed(1)
    n_rows, k, dim = 30, 4, 5
    centres = unit(torch.randn(n_rows, k, dim, generator=g))
    interests = torch.randn(n_rows, k, dim, generator=g)
    k_per_row = torch.randint(0, k + 1, (n_rows,), generator=g)
    matched = match_clusters_to_interests(centres, k_per_row, interests)
    cosine = centres @ unit(interests).transpose(1, 2)  # [B, K, K]
    for row, kb in enumerate(k_per_row.tolist()):
        chosen = matched[row, :kb].tolist()
        assert (matched[row, kb:] == -1).all()
        assert len(set(chosen)) == kb and all(0 <= c < k for c in chosen)
        total = sum(cosine[row, c, i] for c, i in enumerate(chosen))
        best = max((sum(cosine[row, c, i] for c, i in enumerate(perm))
                    for perm in itertools.permutations(range(k), kb)), default=0.0)
        assert float(total) == pytest.approx(float(best), abs=1e-5)


def test_single_target_goes_to_the_closest_interest():
    g = torch.Generator().manual_seed(2)
    targets = torch.randn(50, 1, 8, generator=g)
    interests = torch.randn(50, 4, 8, generator=g)
    index = assign_targets_to_interests(targets, torch.ones(50, 1, dtype=torch.bool), interests)
    expected = torch.einsum("bd,bkd->bk", unit(targets[:, 0]), unit(interests)).argmax(1)
    assert torch.equal(index[:, 0], expected)


def test_targets_of_one_group_share_an_interest_and_groups_get_distinct_ones():
    x, labels = planted_groups(n_rows=8, n_groups=2, per_group=3, dim=8)
    interests = torch.randn(8, 2, 8)
    valid = torch.ones(labels.shape, dtype=torch.bool)
    valid[0, 0] = False
    index = assign_targets_to_interests(x, valid, interests)
    assert index[0, 0] == -1
    for row in range(8):
        groups = {}
        for slot in range(6):
            if valid[row, slot]:
                groups.setdefault(int(labels[row, slot]), set()).add(int(index[row, slot]))
        assert all(len(s) == 1 for s in groups.values())
        assert len({next(iter(s)) for s in groups.values()}) == 2


# --------------------------------------------------------------------------- the loss

def candidate_ids(target_ids, b, w, n_items):
    """Items 1.. without the row's other targets (a row's positives are not its negatives)."""
    target = int(target_ids[b, w])
    others = set(target_ids[b].tolist()) - {target}
    return [i for i in range(1, n_items) if i not in others]


def manual_full_loss(interests, target_ids, item_emb, index, scale):
    losses = []
    for b, w in (target_ids > 0).nonzero().tolist():
        ids = candidate_ids(target_ids, b, w, item_emb.shape[0])  # item 0 left out
        logits = scale * unit(item_emb[ids]) @ unit(interests[b, index[b, w]])
        losses.append(-torch.log_softmax(logits, 0)[ids.index(int(target_ids[b, w]))])
    return torch.stack(losses).mean()


def test_full_softmax_matches_manual_and_excludes_padding_item():
    torch.manual_seed(0)
    interests = torch.randn(3, 2, 6)
    item_emb = torch.randn(12, 6, requires_grad=True)
    with torch.no_grad():
        item_emb[0] = interests[0, 0] * 5  # a padding row that would dominate any softmax
    target_ids = torch.tensor([[3, 7, 0], [11, 0, 0], [1, 2, 4]])
    loss_fn = DMILLoss()
    loss, stats = loss_fn.forward_with_stats(interests, target_ids, item_emb)
    assert stats["n_targets"] == 6
    index = stats["interest_index"]
    assert torch.equal(index, loss_fn.last_interest_index)
    assert (index[target_ids == 0] == -1).all() and (index[target_ids > 0] >= 0).all()
    expected = manual_full_loss(interests, target_ids, item_emb.detach(), index, 1 / 0.07)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert torch.equal(item_emb.grad[0], torch.zeros(6))


def test_negatives_equal_to_the_positive_are_masked_by_id():
    torch.manual_seed(0)
    interests = torch.randn(2, 2, 4, requires_grad=True)
    item_emb = torch.randn(9, 4)
    target_ids = torch.tensor([[5], [2]])
    loss_fn = DMILLoss()
    # a negative list made only of the positive: softmax over the positive alone, log(1) = 0
    only_positive = loss_fn(interests, target_ids, item_emb, neg_ids=torch.tensor([[5, 5, 5], [2, 2, 2]]))
    assert only_positive.item() == 0.0
    only_positive.backward()
    assert torch.equal(interests.grad, torch.zeros_like(interests))
    # real negatives: positive and non-zero, and the copies of the positive change nothing
    real = loss_fn(interests, target_ids, item_emb, neg_ids=torch.tensor([[1, 3], [4, 6]]))
    mixed = loss_fn(interests, target_ids, item_emb, neg_ids=torch.tensor([[5, 1, 5, 3], [2, 4, 6, 2]]))
    assert real.item() > 0.0
    assert mixed.item() == pytest.approx(real.item(), rel=1e-6)


def test_seen_items_leave_the_full_softmax_but_a_repeated_positive_stays():
    torch.manual_seed(2)
    interests = torch.randn(1, 1, 4)
    item_emb = torch.randn(6, 4)
    loss_fn = DMILLoss()
    query = unit(interests[0, 0])
    logits = (1 / 0.07) * unit(item_emb) @ query  # [6]
    # target 3, seen items 2 and 5 (and 3 itself: a repeat): softmax over items 1, 3, 4
    loss = loss_fn(interests, torch.tensor([[3]]), item_emb, seen_ids=torch.tensor([[2, 5, 3, 0]]))
    expected = -torch.log_softmax(logits[[1, 3, 4]], 0)[1]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    unmasked = loss_fn(interests, torch.tensor([[3]]), item_emb)
    assert loss.item() < unmasked.item()


def test_seen_items_are_dropped_from_sampled_negatives():
    torch.manual_seed(3)
    interests = torch.randn(1, 1, 4)
    item_emb = torch.randn(8, 4)
    loss_fn = DMILLoss()
    target, seen = torch.tensor([[2]]), torch.tensor([[6, 7]])
    masked = loss_fn(interests, target, item_emb, neg_ids=torch.tensor([[4, 6, 5, 7]]), seen_ids=seen)
    without_seen = loss_fn(interests, target, item_emb, neg_ids=torch.tensor([[4, 5]]))
    assert masked.item() == pytest.approx(without_seen.item(), rel=1e-6)


def test_collapsed_embeddings_do_not_zero_the_loss():
    # HLLM's cos > 0.99 mask would drop every negative here and report loss 0
    interests = torch.ones(2, 2, 4)
    item_emb = torch.ones(6, 4)
    loss = DMILLoss()(interests, torch.tensor([[1], [2]]), item_emb, neg_ids=torch.tensor([[3, 4], [4, 5]]))
    assert loss.item() == pytest.approx(math.log(3), rel=1e-5)


def test_sampled_loss_matches_manual_with_per_target_negatives():
    torch.manual_seed(1)
    interests = torch.randn(2, 2, 5)
    item_emb = torch.randn(10, 5)
    target_ids = torch.tensor([[1, 8], [3, 0]])
    neg_ids = torch.tensor([[[2, 3], [8, 4]], [[5, 6], [7, 9]]])  # [B, W, S]
    loss_fn = DMILLoss()
    loss, stats = loss_fn.forward_with_stats(interests, target_ids, item_emb, neg_ids)
    index, scale, losses = stats["interest_index"], 1 / 0.07, []
    for b, w in [(0, 0), (0, 1), (1, 0)]:
        query = unit(interests[b, index[b, w]])
        candidates = [int(target_ids[b, w])] + [n for n in neg_ids[b, w].tolist() if n != target_ids[b, w]]
        logits = scale * unit(item_emb[candidates]) @ query
        losses.append(-torch.log_softmax(logits, 0)[0])
    assert loss.item() == pytest.approx(float(torch.stack(losses).mean()), rel=1e-5)


def test_logit_scale_is_learnable_and_capped():
    assert DMILLoss().logit_scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    capped = DMILLoss(temperature_init=0.001)
    assert capped.logit_scale().item() == pytest.approx(100.0, rel=1e-6)
    assert DMILLoss(max_logit_scale=20.0, temperature_init=0.01).logit_scale().item() == pytest.approx(20.0)
    assert capped.log_logit_scale.requires_grad


def test_no_valid_target_gives_a_zero_loss_with_a_graph():
    interests = torch.randn(2, 2, 3, requires_grad=True)
    loss = DMILLoss()(interests, torch.zeros(2, 4, dtype=torch.long), torch.randn(5, 3))
    assert loss.item() == 0.0
    loss.backward()


def manual_readout_loss(interests, target_ids, item_emb, scale, candidates=None):
    """Cross-entropy of every target under ``scale * max_k cos(h_k, e_i)``: over items 1.. (full)
    or over ``[target] + candidates[b, w]`` (sampled), the row's other targets left out."""
    losses = []
    for b, w in (target_ids > 0).nonzero().tolist():
        target = int(target_ids[b, w])
        ids = (candidate_ids(target_ids, b, w, item_emb.shape[0]) if candidates is None
               else [target] + [i for i in candidates[b][w] if i not in target_ids[b].tolist()])
        logits = scale * (unit(item_emb[ids]) @ unit(interests[b]).T).max(1).values
        losses.append(-torch.log_softmax(logits, 0)[ids.index(target)])
    return torch.stack(losses).mean()


def test_readout_loss_scores_every_item_by_its_best_interest():
    torch.manual_seed(4)
    interests = torch.randn(3, 3, 6)
    item_emb = torch.randn(12, 6)
    target_ids = torch.tensor([[3, 7, 0], [11, 0, 0], [1, 2, 4]])
    loss = DMILLoss().readout_loss(interests, target_ids, item_emb)
    expected = manual_readout_loss(interests, target_ids, item_emb, 1 / 0.07)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    negatives = torch.tensor([[5, 6], [8, 9], [10, 3]])  # [B, S], shared by a row's targets
    sampled = DMILLoss().readout_loss(interests, target_ids, item_emb, neg_ids=negatives)
    candidates = [[negatives[b].tolist()] * 3 for b in range(3)]
    expected = manual_readout_loss(interests, target_ids, item_emb, 1 / 0.07, candidates)
    assert sampled.item() == pytest.approx(expected.item(), rel=1e-5)


def test_readout_loss_with_one_interest_is_the_dmil_loss():
    torch.manual_seed(5)
    interests = torch.randn(2, 1, 5)
    item_emb = torch.randn(9, 5)
    target_ids, seen = torch.tensor([[3, 4], [8, 0]]), torch.tensor([[2, 6], [1, 0]])
    loss_fn = DMILLoss()
    for negatives in (None, torch.tensor([[1, 2, 5], [3, 6, 7]])):
        readout = loss_fn.readout_loss(interests, target_ids, item_emb, negatives, seen_ids=seen)
        dmil = loss_fn(interests, target_ids, item_emb, negatives, seen_ids=seen)
        assert readout.item() == pytest.approx(dmil.item(), rel=1e-6)


def test_readout_loss_pushes_down_the_interest_that_ranks_a_negative_first():
    # interest 0 is the positive itself, interest 1 near a negative: DMIL trains the target on
    # interest 0 only and never sees that interest 1 ranks the negative close to the positive
    item_emb = torch.cat([torch.zeros(1, 3), torch.eye(3)])  # item 0 padding, items 1..3 orthogonal
    near_negative = item_emb[2] + 0.3 * item_emb[3]  # off axis: its cosine has a gradient
    interests = torch.stack([item_emb[1], near_negative]).unsqueeze(0).requires_grad_(True)  # [1, 2, 3]
    target = torch.tensor([[1]])
    loss_fn = DMILLoss()
    dmil = loss_fn(interests, target, item_emb)
    dmil.backward()
    assert torch.equal(interests.grad[0, 1], torch.zeros(3))
    interests.grad = None
    readout = loss_fn.readout_loss(interests, target, item_emb)
    assert readout.item() > dmil.item() + 0.3  # the negative scores 0.96 of the positive
    readout.backward()
    assert interests.grad[0, 1].abs().sum() > 0


def test_readout_loss_without_targets_is_a_zero_with_a_graph():
    interests = torch.randn(2, 2, 3, requires_grad=True)
    loss = DMILLoss().readout_loss(interests, torch.zeros(2, 4, dtype=torch.long), torch.randn(5, 3))
    assert loss.item() == 0.0
    loss.backward()


@pytest.mark.parametrize("kwargs", [dict(temperature_init=0), dict(max_logit_scale=-1), dict(kmeans_iters=-1)])
def test_loss_rejects_bad_config(kwargs):
    with pytest.raises(ConfigError):
        DMILLoss(**kwargs)


# --------------------------------------------------------------------------- training sanity

def two_group_catalogue(dim=16, noise=0.2, seed=0):
    """Item 0 = padding, 1..20 around direction a, 21..40 around b (orthogonal), 41..60 random."""
    g = torch.Generator().manual_seed(seed)
    a, b = unit(torch.randn(2, dim, generator=g))
    b = unit(b - (b @ a) * a)
    items = torch.cat([
        torch.zeros(1, dim),
        a + noise * unit(torch.randn(20, dim, generator=g)),
        b + noise * unit(torch.randn(20, dim, generator=g)),
        unit(torch.randn(20, dim, generator=g)),
    ])
    return items, a, b, g


def two_interest_windows(n_rows, per_group, generator):
    """Every row's window mixes ``per_group`` items of group A and of group B, shuffled."""
    rows = []
    for _ in range(n_rows):
        window = torch.cat([torch.randint(1, 21, (per_group,), generator=generator),
                            torch.randint(21, 41, (per_group,), generator=generator)])
        rows.append(window[torch.randperm(2 * per_group, generator=generator)])
    return torch.stack(rows)  # [B, W]


@pytest.fixture
def single_thread():
    """Tiny ops in a 100-step loop: extra threads only add overhead on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def precision_at_20(interest, items, group):
    top = (unit(items[1:]) @ unit(interest)).topk(20).indices + 1
    return len(set(top.tolist()) & set(group)) / 20


@pytest.mark.parametrize("mode", ["full", "sampled"])
def test_training_specialises_one_interest_per_planted_group(mode, single_thread):
    # each row is a user with two interests (groups A and B); the windows are redrawn every
    # step, so the only way to fit them is one interest per group, not memorising items
    items, a, b, g = two_group_catalogue()
    n_rows = 8
    torch.manual_seed(0)
    interests = torch.nn.Parameter(torch.randn(n_rows, 2, 16))  # [B, K=2, d]
    loss_fn = DMILLoss()
    optimizer = torch.optim.Adam([interests, *loss_fn.parameters()], lr=0.05)
    losses = []
    for _ in range(100):
        targets = two_interest_windows(n_rows, 3, g)  # [B, 6]
        neg_ids = None if mode == "full" else torch.randint(1, 61, (n_rows, 20), generator=g)
        loss = loss_fn(interests, targets, items, neg_ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.7 * losses[0]

    learned = unit(interests.detach())  # [B, 2, d]
    cos_a, cos_b = learned @ a, learned @ b  # [B, 2]
    precisions = []
    for row in range(n_rows):
        ia = int(cos_a[row].argmax())
        ib = 1 - ia
        # one interest points at A, the other at B, each well clear of the other group
        assert cos_a[row, ia] > 0.4 and cos_a[row, ia] - cos_b[row, ia] > 0.4, (row, cos_a[row], cos_b[row])
        assert cos_b[row, ib] > 0.4 and cos_b[row, ib] - cos_a[row, ib] > 0.4, (row, cos_a[row], cos_b[row])
        precisions.append(precision_at_20(learned[row, ia], items, range(1, 21)))
        precisions.append(precision_at_20(learned[row, ib], items, range(21, 41)))
    assert sum(precisions) / len(precisions) > 0.9

    # the last assignment sent each group to one interest, and the two groups to different ones
    index = loss_fn.last_interest_index
    in_a = targets <= 20
    for row in range(n_rows):
        assert set(index[row][in_a[row]].tolist()) == {int(cos_a[row].argmax())}
        assert set(index[row][~in_a[row]].tolist()) == {1 - int(cos_a[row].argmax())}


def test_single_interest_cannot_fit_both_groups(single_thread):
    # control for the test above: with K=1 the interest sits between the groups
    items, a, b, g = two_group_catalogue()
    torch.manual_seed(0)
    interests = torch.nn.Parameter(torch.randn(4, 1, 16))
    loss_fn = DMILLoss()
    optimizer = torch.optim.Adam([interests], lr=0.05)
    for _ in range(60):
        loss = loss_fn(interests, two_interest_windows(4, 3, g), items)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    learned = unit(interests.detach()[:, 0])
    assert ((learned @ a - learned @ b).abs() < 0.3).all()


# --------------------------------------------------------------------------- retrieval

def test_max_over_interests_and_score_items_match_brute_force():
    torch.manual_seed(0)
    interests, item_emb = torch.randn(5, 3, 7), torch.randn(11, 7)
    brute = torch.stack([
        torch.stack([max(F.cosine_similarity(interests[b, k], item_emb[i], dim=0) for k in range(3))
                     for i in range(11)]) for b in range(5)])
    scores = max_over_interests(interests, item_emb)
    assert scores.shape == (5, 11)
    assert torch.allclose(scores, brute, atol=1e-5)
    picked = torch.tensor([3, 0, 10, 5, 5])
    assert torch.allclose(score_items(interests, item_emb[picked]), scores[torch.arange(5), picked], atol=1e-6)


def reference_merge(interests, item_emb, k, blocked):
    """Plain-Python round robin over the per-interest top-k lists."""
    out = []
    for b in range(interests.shape[0]):
        lists = []
        for h in range(interests.shape[1]):
            scores = unit(item_emb) @ unit(interests[b, h])
            order = [i for i in scores.argsort(descending=True).tolist() if not blocked[b, i]]
            lists.append(order[:k])
        merged = []
        for rank in range(k):
            for ranked in lists:
                if rank < len(ranked) and ranked[rank] not in merged:
                    merged.append(ranked[rank])
        out.append((merged + [-1] * k)[:k])
    return out


def test_merge_topk_round_robin_on_a_handmade_example():
    interests = torch.stack([at_angle(0), at_angle(90)]).unsqueeze(0)  # [1, 2, 2]
    # item 0 (padding) sits on interest 1; interest 1 ranks 1,3,2,5,4 and interest 2 ranks 4,5,2,3,1
    item_emb = torch.stack([at_angle(a) for a in (0, 0, 45, 20, 80, 70)])
    assert merge_topk(interests, item_emb, 3).tolist() == [[1, 4, 3]]
    assert merge_topk(interests, item_emb, 5).tolist() == [[1, 4, 3, 5, 2]]  # duplicates skipped
    exclude = torch.zeros(6, dtype=torch.bool)
    exclude[3] = True
    assert merge_topk(interests, item_emb, 5, exclude=exclude).tolist() == [[1, 4, 2, 5, -1]]
    assert merge_topk(interests, item_emb, 2, padding_idx=None).tolist()[0][1] == 4


def test_merge_topk_matches_reference_and_has_no_duplicates():
    g = torch.Generator().manual_seed(4)
    interests, item_emb = torch.randn(6, 3, 5, generator=g), torch.randn(30, 5, generator=g)
    exclude = torch.rand(6, 30, generator=g) < 0.3
    merged = merge_topk(interests, item_emb, 8, exclude=exclude)
    blocked = exclude.clone()
    blocked[:, 0] = True
    assert merged.tolist() == reference_merge(interests, item_emb, 8, blocked)
    for row in merged.tolist():
        assert len(set(row)) == len(row) and 0 not in row
    with pytest.raises(ConfigError):
        merge_topk(interests, item_emb, 0)


@pytest.mark.parametrize("normalize, biased", [(True, False), (False, False), (True, True)])
def test_round_robin_scores_rank_the_catalogue_in_merge_topks_order(normalize, biased):
    g = torch.Generator().manual_seed(5)
    interests, item_emb = torch.randn(6, 3, 5, generator=g), torch.randn(30, 5, generator=g)
    bias = torch.randn(30, generator=g) if biased else None
    scores = round_robin_scores(interests, item_emb, normalize, bias, 2.0)  # [B, n]
    assert scores.shape == (6, 30) and torch.isfinite(scores).all()
    full = scores[:, 1:].argsort(dim=1, descending=True) + 1  # item 0 (padding) ranks last
    assert torch.equal(scores.argmin(dim=1), torch.zeros(6, dtype=torch.long))
    assert full.tolist() == merge_topk(interests, item_emb, 29, item_bias=bias, scale=2.0,
                                       normalize=normalize).tolist()
    # one interest: its own ranking
    single = round_robin_scores(interests[:, :1], item_emb, normalize)
    own = unit_rows(interests[:, 0], normalize) @ unit_rows(item_emb, normalize).T  # [B, n]
    assert torch.equal(single[:, 1:].argsort(dim=1, descending=True),
                       own[:, 1:].argsort(dim=1, descending=True))


# --------------------------------------------------------------------------- dot-product scores

def test_dot_similarity_scores_are_raw_dot_products_with_a_fixed_scale():
    torch.manual_seed(0)
    interests = torch.randn(3, 2, 6)
    item_emb = torch.randn(12, 6)
    expected = torch.einsum("bkd,nd->bkn", interests, item_emb).amax(1)  # [B, n]
    assert torch.allclose(max_over_interests(interests, item_emb, normalize=False), expected)
    assert torch.allclose(score_items(interests, item_emb[[4, 7, 1]], normalize=False),
                          expected[[0, 1, 2], [4, 7, 1]])
    top = merge_topk(interests[:, :1], item_emb, 1, normalize=False)[:, 0]
    assert torch.equal(top, (interests[:, 0] @ item_emb[1:].T).argmax(1) + 1)
    loss_fn = DMILLoss(similarity="dot")
    assert loss_fn.logit_scale().item() == 1.0
    assert not list(loss_fn.parameters()) and "log_logit_scale" in loss_fn.state_dict()


def test_dot_similarity_losses_match_a_softmax_over_dot_products():
    torch.manual_seed(1)
    interests = torch.randn(2, 1, 4)
    item_emb = torch.randn(7, 4)
    target_ids = torch.tensor([[3], [5]])
    loss_fn = DMILLoss(similarity="dot")
    logits = torch.einsum("bd,nd->bn", interests[:, 0], item_emb[1:])  # item 0 left out
    expected = F.cross_entropy(logits, target_ids[:, 0] - 1)
    assert loss_fn(interests, target_ids, item_emb).item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss_fn.readout_loss(interests, target_ids, item_emb).item() == pytest.approx(
        expected.item(), rel=1e-5)
    negatives = torch.tensor([[1, 2], [4, 6]])
    sampled = torch.stack([
        torch.stack([interests[b, 0] @ item_emb[i] for i in [target_ids[b, 0], *negatives[b]]])
        for b in range(2)])  # [B, 1 + S]
    expected = F.cross_entropy(sampled, torch.zeros(2, dtype=torch.long))
    assert loss_fn(interests, target_ids, item_emb, neg_ids=negatives).item() == pytest.approx(
        expected.item(), rel=1e-5)


def test_unknown_similarity_is_named():
    with pytest.raises(ConfigError) as info:
        DMILLoss(similarity="euclid")
    assert str(info.value) == ("similarity='euclid' is not one of ['cosine', 'dot']. "
                               "Fix: --similarity=cosine (the default).")


def test_a_rows_other_targets_are_never_its_negatives():
    """Multi-positive InfoNCE: targets 3 and 5 of one row (one interest, K = 1) are each scored
    against the catalogue without the other; a sampled copy of a co-target is dropped too."""
    torch.manual_seed(4)
    interests = torch.randn(1, 1, 4)
    item_emb = torch.randn(7, 4)
    logits = (1 / 0.07) * unit(item_emb) @ unit(interests[0, 0])  # [7]
    loss = DMILLoss()(interests, torch.tensor([[3, 5]]), item_emb)
    expected = (-torch.log_softmax(logits[[1, 2, 3, 4, 6]], 0)[2]
                - torch.log_softmax(logits[[1, 2, 4, 5, 6]], 0)[3]) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    readout = DMILLoss().readout_loss(interests, torch.tensor([[3, 5]]), item_emb)
    assert readout.item() == pytest.approx(expected.item(), rel=1e-5)
    sampled = DMILLoss()(interests, torch.tensor([[3, 5]]), item_emb,
                         neg_ids=torch.tensor([[5, 3, 1]]))
    expected_sampled = (-torch.log_softmax(logits[[3, 1]], 0)[0]
                        - torch.log_softmax(logits[[5, 1]], 0)[0]) / 2
    assert sampled.item() == pytest.approx(expected_sampled.item(), rel=1e-5)
