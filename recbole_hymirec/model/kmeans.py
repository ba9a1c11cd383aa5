"""Cosine k-means, the one clustering of HyMiRec, in its two uses.

* :func:`balanced_cosine_kmeans` clusters a pool of item embeddings ``[n, D]`` (the codebook's
  layers): k-means++ seeds, no cluster above a capacity, empty clusters re-seeded, stops when
  fewer than ``KMEANS_TOLERANCE`` of the items move.
* :func:`cosine_kmeans` clusters every row of a batch ``[B, W, d]`` at once (DMIL's target
  windows): deterministic farthest-point seeds, ``min(K, #valid)`` clusters per row (fewer
  with a seed cosine cap), a fixed number of Lloyd iterations and no host sync.

Both assign by cosine to the centres and move each centre to the mean of its members.
Pure torch, no RecBole import.
"""
import math

import torch
import torch.nn.functional as F

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.model.retrieval import EPS as _EPS, unit_rows

# Rows per similarity matmul in encode: bounds its temporary memory for large pools (fit
# holds the full [n, C] matrix, which balanced assignment needs anyway).
SIMILARITY_CHUNK_ROWS = 8192
# k-means++ seeds are drawn from a seeded sample of at most this many items per cluster:
# the sequential seeding costs C passes over its pool, the iterations then see every item.
KMEANS_INIT_ITEMS_PER_CLUSTER = 64
# k-means stops once fewer than this fraction of the items change cluster in an iteration.
KMEANS_TOLERANCE = 1e-3


def cosine_similarity_matrix(unit_x, centroids):
    """Cosine similarity of unit rows ``unit_x`` [n, D] with every centroid [C, D] -> [n, C]."""
    return unit_x @ unit_rows(centroids).T


def cosine_assign(x, centroids):
    """``argmax_x cos(e_i, c_x)`` for every row of ``x`` [n, D] -> long [n] (ties: lowest index).

    Computed chunk by chunk, so the full [n, C] matrix is never held.
    """
    unit_x = unit_rows(x)  # [n, D]
    unit_centroids_t = unit_rows(centroids).T  # [D, C]
    codes = torch.empty(x.shape[0], dtype=torch.long, device=x.device)  # [n]
    for start in range(0, x.shape[0], SIMILARITY_CHUNK_ROWS):
        chunk = unit_x[start:start + SIMILARITY_CHUNK_ROWS]  # [b, D]
        codes[start:start + SIMILARITY_CHUNK_ROWS] = (chunk @ unit_centroids_t).argmax(dim=1)
    return codes


def cluster_capacity(max_cluster_share, n_items):
    """Most items one cluster may take: ``ceil(share * n)``, robust to float noise."""
    return math.ceil(round(max_cluster_share * n_items, 9))


def balanced_assign(similarity, capacity):
    """Capacity-constrained argmax: no cluster takes more than ``capacity`` rows.

    Rounds of proposals: every unassigned item proposes to its most similar cluster that
    still has room; each cluster accepts its most similar proposers up to its remaining room
    (ties: lower item index) and the rest propose again. A round either assigns every
    proposer or fills at least one cluster, so there are at most C + 1 rounds. Deterministic.

    Args:
        similarity: [n, C] cosine similarities.
        capacity: int, with ``capacity * C >= n``.

    Returns:
        long [n] cluster of every item.
    """
    n_items, n_clusters = similarity.shape
    if capacity * n_clusters < n_items:
        raise ValueError(f"{n_clusters} clusters of capacity {capacity} cannot hold {n_items} items.")
    device = similarity.device
    codes = torch.full((n_items,), -1, dtype=torch.long, device=device)  # [n]
    room = torch.full((n_clusters,), capacity, dtype=torch.long, device=device)  # [C]
    proposal = similarity.argmax(dim=1)  # [n]
    if int(torch.bincount(proposal, minlength=n_clusters).max()) <= capacity:
        return proposal  # the cap does not bind: plain argmax, no copy of the matrix
    unassigned = torch.arange(n_items, device=device)  # [u]
    while unassigned.numel() > 0:
        candidate_scores = similarity[unassigned]  # [u, C], a copy
        candidate_scores[:, room == 0] = float("-inf")  # full clusters take nobody
        proposal = candidate_scores.argmax(dim=1)  # [u]
        proposal_score = candidate_scores.gather(1, proposal.unsqueeze(1)).squeeze(1)  # [u]
        # group proposals by cluster, most similar first (stable sorts keep index order on ties)
        order = torch.sort(proposal_score, descending=True, stable=True).indices  # [u]
        order = order[torch.sort(proposal[order], stable=True).indices]  # [u]
        cluster = proposal[order]  # [u]
        per_cluster = torch.bincount(cluster, minlength=n_clusters)  # [C]
        first_of_cluster = torch.cumsum(per_cluster, 0) - per_cluster  # [C]
        rank = torch.arange(cluster.numel(), device=device) - first_of_cluster[cluster]  # [u]
        accepted = rank < room[cluster]  # [u]
        codes[unassigned[order[accepted]]] = cluster[accepted]
        room -= torch.bincount(cluster[accepted], minlength=n_clusters)
        unassigned = torch.sort(unassigned[order[~accepted]]).values
    return codes


def kmeans_plus_plus_init(unit, n_clusters, generator):
    """k-means++ seeds on the unit sphere: indices [C] of distinct rows of ``unit`` [n, D].

    Each next seed is drawn with probability proportional to its cosine distance
    ``1 - max cos`` to the seeds so far (= squared Euclidean distance / 2 on the sphere).
    Zero rows (no direction) are never drawn while another row has positive weight.
    """
    n_items = unit.shape[0]
    has_direction = (unit.abs().sum(dim=1) > 0).cpu()  # [n]
    chosen = torch.zeros(n_items, dtype=torch.bool)  # [n]
    first = int(torch.randint(n_items, (1,), generator=generator))
    seeds = [first]
    chosen[first] = True
    best_cos = unit @ unit[first]  # [n]
    for _ in range(1, n_clusters):
        weights = (1.0 - best_cos).clamp_min(0).cpu()  # [n]
        weights[chosen | ~has_direction] = 0
        if float(weights.sum()) <= 0:  # fewer distinct directions than clusters
            weights = (~chosen).float()
        seed = int(torch.multinomial(weights, 1, generator=generator))
        seeds.append(seed)
        chosen[seed] = True
        best_cos = torch.maximum(best_cos, unit @ unit[seed])
    return torch.tensor(seeds, dtype=torch.long, device=unit.device)


def sum_per_cluster(values, codes, n_clusters):
    """Sum of the rows of ``values`` [n, D] per cluster -> [C, D].

    A sparse one-hot [C, n] product: several times faster than ``index_add_`` on CPU.
    """
    n_items = values.shape[0]
    rows = torch.stack([codes, torch.arange(n_items, device=codes.device)])  # [2, n]
    one_hot = torch.sparse_coo_tensor(
        rows, values.new_ones(n_items), (n_clusters, n_items), check_invariants=False
    )  # [C, n]
    return torch.sparse.mm(one_hot, values)


def update_centroids(residual, codes, previous, assigned_cos):
    """Centroid = mean of the residuals assigned to it; empty clusters are re-seeded.

    An empty cluster takes the residual of the item worst represented by its current
    centroid (lowest assigned cosine, distinct items, lowest index on ties), so no codeword
    stays dead. Deterministic.

    Args:
        residual: [n, D]; codes: long [n]; previous: [C, D]; assigned_cos: [n].

    Returns:
        [C, D] new centroids.
    """
    n_clusters = previous.shape[0]
    sums = sum_per_cluster(residual, codes, n_clusters)  # [C, D]
    counts = torch.bincount(codes, minlength=n_clusters)  # [C]
    centroids = sums / counts.clamp_min(1).unsqueeze(1).to(residual.dtype)  # [C, D]
    empty = torch.nonzero(counts == 0).squeeze(1)  # [k]
    if empty.numel() > 0:
        worst = torch.sort(assigned_cos, stable=True).indices[:empty.numel()]  # [k]
        centroids[empty] = residual[worst]
    return centroids


def balanced_cosine_kmeans(residual, n_clusters, capacity, n_iters, generator):
    """Balanced k-means under cosine similarity on the rows of ``residual`` [n, D].

    Returns:
        (centroids [C, D], codes long [n]); ``codes`` is the balanced assignment to exactly
        these centroids.
    """
    unit = unit_rows(residual)  # [n, D]
    init_pool = sample_init_pool(residual.shape[0], n_clusters, generator).to(residual.device)  # [m]
    seeds = init_pool[kmeans_plus_plus_init(unit[init_pool], n_clusters, generator)]  # [C]
    centroids = residual[seeds].clone()  # [C, D]
    similarity = cosine_similarity_matrix(unit, centroids)  # [n, C]
    codes = balanced_assign(similarity, capacity)  # [n]
    for _ in range(n_iters):
        assigned_cos = similarity.gather(1, codes.unsqueeze(1)).squeeze(1)  # [n]
        centroids = update_centroids(residual, codes, centroids, assigned_cos)
        similarity = cosine_similarity_matrix(unit, centroids)
        new_codes = balanced_assign(similarity, capacity)
        n_changed = int((new_codes != codes).sum())
        codes = new_codes  # always the assignment to the returned centroids
        if n_changed <= KMEANS_TOLERANCE * residual.shape[0]:
            break
    return centroids, codes


def sample_init_pool(n_items, n_clusters, generator):
    """Sorted indices of the items k-means++ seeds from: all, or a seeded random sample."""
    pool_size = KMEANS_INIT_ITEMS_PER_CLUSTER * n_clusters
    if n_items <= pool_size:
        return torch.arange(n_items)
    return torch.sort(torch.randperm(n_items, generator=generator)[:pool_size]).values


# ----------------------------------------------------------------- batched (DMIL)

def farthest_point_init(unit, valid, k_per_row, n_clusters, max_seed_cosine=None):
    """Deterministic seeds: the first valid target, then repeatedly the valid target whose
    largest cosine to the chosen seeds is the lowest.

    Args:
        unit: [B, W, d] L2-normalised targets. valid: [B, W] bool.
        k_per_row: [B] most seeds per row. n_clusters: K.
        max_seed_cosine: None, or a float: a row stops seeding once its farthest target has a
            cosine of at least this to a seed (every target is then near one), so a window of
            one theme gets one cluster instead of ``k_b`` pieces of it.

    Returns:
        centres [B, K, d] (rows' unused slots are zero); seeds [B] long, the seeds of each row
        (``k_per_row`` without ``max_seed_cosine``, at most that with it).
    """
    batch_size, window, dim = unit.shape
    rows = torch.arange(batch_size, device=unit.device)
    centres = unit.new_zeros(batch_size, n_clusters, dim)  # [B, K, d]
    chosen = torch.zeros_like(valid)  # [B, W]
    best_cos = unit.new_full((batch_size, window), -math.inf)  # [B, W] max cos to chosen seeds
    seeding = torch.ones_like(k_per_row, dtype=torch.bool)  # [B] rows not yet stopped by the cosine
    seeds = torch.zeros_like(k_per_row)  # [B]
    for c in range(n_clusters):  # a row with fewer seeds ignores the later rounds
        if c == 0:
            pick = valid.long().argmax(dim=1)  # [B] first valid target
        else:
            candidate = best_cos.masked_fill(~valid | chosen, math.inf)  # [B, W]
            pick = candidate.argmin(dim=1)  # [B] ties: lowest index
            if max_seed_cosine is not None:
                seeding &= candidate[rows, pick] < max_seed_cosine
        active = (k_per_row > c) & seeding  # [B] rows that take a seed this round
        seed = unit[rows, pick]  # [B, d]
        centres[:, c] = torch.where(active.unsqueeze(1), seed, centres[:, c])
        chosen[rows, pick] |= active
        seeds += active.long()
        best_cos = torch.maximum(best_cos, torch.einsum("bwd,bd->bw", unit, seed))
    return centres, seeds


def _assign_to_centres(unit, valid, centres, k_per_row):
    """argmax cosine among each row's first ``k_b`` centres -> long [B, W], -1 where invalid."""
    n_clusters = centres.shape[1]
    similarity = torch.einsum("bwd,bkd->bwk", unit, centres)  # [B, W, K]
    usable = torch.arange(n_clusters, device=unit.device) < k_per_row.unsqueeze(1)  # [B, K]
    similarity = similarity.masked_fill(~usable.unsqueeze(1), -math.inf)
    assign = similarity.argmax(dim=2)  # [B, W]
    return assign.masked_fill(~valid, -1)


def cosine_kmeans(x, valid, n_clusters, n_iters=5, max_seed_cosine=None):
    """Cosine k-means of every row's valid targets, vectorised over the batch.

    Args:
        x: [B, W, d] target embeddings (normalised inside).
        valid: [B, W] bool, False for padding targets.
        n_clusters: K; row ``b`` gets ``k_b = min(K, #valid_b)`` clusters.
        n_iters: Lloyd iterations after the farthest-point init (0: assign to the seeds).
        max_seed_cosine: None, or a float: fewer clusters for a row whose targets all lie
            within this cosine of the seeds so far (:func:`farthest_point_init`).

    Returns:
        assign [B, W] long in ``[0, k_b)``, -1 for invalid targets;
        centres [B, K, d] unit centres (slots ``>= k_b`` are zero);
        k_per_row [B] long.
    """
    _check_n_clusters(n_clusters)
    if int(n_iters) != n_iters or n_iters < 0:
        raise ConfigError(f"dmil k-means n_iters={n_iters} is invalid: use an integer >= 0 (e.g. 5).")
    if x.dim() != 3 or valid.shape != x.shape[:2]:
        raise ValueError(f"cosine_kmeans expects x [B, W, d] and valid [B, W], got {tuple(x.shape)} "
                         f"and {tuple(valid.shape)}")
    valid = valid.bool()
    unit = F.normalize(x.float(), dim=-1, eps=_EPS) * valid.unsqueeze(-1)  # [B, W, d]
    k_per_row = valid.sum(dim=1).clamp(max=n_clusters)  # [B]
    centres, k_per_row = farthest_point_init(unit, valid, k_per_row, n_clusters,
                                             max_seed_cosine)  # [B, K, d], [B]
    for _ in range(int(n_iters)):
        assign = _assign_to_centres(unit, valid, centres, k_per_row)  # [B, W]
        one_hot = F.one_hot(assign.clamp(min=0), n_clusters).to(unit.dtype)  # [B, W, K]
        one_hot = one_hot * valid.unsqueeze(-1)
        sums = torch.einsum("bwk,bwd->bkd", one_hot, unit)  # [B, K, d]
        counts = one_hot.sum(dim=1)  # [B, K]
        # an emptied centre keeps its position (it may win targets back next iteration)
        centres = torch.where(counts.unsqueeze(-1) > 0, F.normalize(sums, dim=-1, eps=_EPS), centres)
    assign = _assign_to_centres(unit, valid, centres, k_per_row)
    return assign, centres, k_per_row


def _check_n_clusters(n_clusters):
    if isinstance(n_clusters, bool) or int(n_clusters) != n_clusters or n_clusters < 1:
        raise ConfigError(
            f"number of interests / clusters = {n_clusters} is invalid: use an integer >= 1 (e.g. 4)."
        )
