"""Seen-item masking in the full ranking of sequential models (protocol key ``mask_seen_items``).

RecBole's full ranking masks a user's earlier items for general models (the training items
when validating, training + validation items when testing), but nothing for sequential models:
their rankings keep every item the user has already interacted with. On MovieLens, where no
user rates a movie twice, a model that scores by similarity to what the user read spends top-k
slots on those items. With ``mask_seen_items: True`` the valid and test rankings of every
sequential model mask RecBole's general-model set, built from the splits as RecBole builds it:
valid masks the user's training items, test masks the training and valid items. It is a
protocol key (the same for every model of a leaderboard), never a model's. No row's own target
is read to build its mask: a repeated target is masked too, a miss for every model.
"""
import torch
from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader
from recbole.utils import ModelType

from recbole_hymirec.errors import ConfigError


class SeenItems:
    """Each user's seen item ids, sorted and unique, stored flat (CSR)."""

    def __init__(self, user_ids, item_ids, n_user_ids, n_item_ids):
        pairs = torch.unique(user_ids * n_item_ids + item_ids)  # sorted: users grouped
        users = pairs // n_item_ids  # [n]
        self.items = pairs % n_item_ids  # [n]
        counts = torch.bincount(users, minlength=n_user_ids)  # [n_user_ids]
        self.starts = torch.cumsum(counts, 0) - counts  # [n_user_ids]
        self.lengths = counts  # [n_user_ids]

    def of_user(self, user_id):
        start = int(self.starts[user_id])
        return self.items[start:start + int(self.lengths[user_id])]

    def index(self, user_ids):
        """``(rows [n], items [n])`` of every seen item of every row, for ``scores[rows, items]``."""
        user_ids = user_ids.cpu()
        counts = self.lengths[user_ids]  # [B]
        rows = torch.repeat_interleave(torch.arange(len(user_ids)), counts)  # [n]
        first = torch.cumsum(counts, 0) - counts  # [B] where each row's run starts
        within = torch.arange(int(counts.sum())) - first[rows]  # [n]
        return rows, self.items[self.starts[user_ids][rows] + within]


class SeenItemMaskingCollate:
    """A sequential full-sort loader's ``collate_fn`` that also returns the seen items as
    RecBole's ``history_index``, which its trainer sets to ``-inf`` before the top-k."""

    def __init__(self, collate, seen, uid_field):
        self.collate, self.seen, self.uid_field = collate, seen, uid_field

    def __call__(self, index):
        interaction, _, positive_u, positive_i = self.collate(index)
        return interaction, self.seen.index(interaction[self.uid_field]), positive_u, positive_i


def _interacted(split, targets=True):
    """``(users, items)`` a split shows: each row's target (``targets``), and the first item of
    each user's sequence, which is no row's target (the history of the row of length 1)."""
    feat = split.inter_feat
    first = feat[split.item_list_length_field] == 1  # [rows]
    users, items = [feat[split.uid_field][first]], [feat[split.item_id_list_field][first, 0]]
    if targets:
        users.append(feat[split.uid_field])
        items.append(feat[split.iid_field])
    return torch.cat(users), torch.cat(items)


def seen_in(train_split, *parts):
    """SeenItems of ``parts``, pairs ``(split, targets)`` read as :func:`_interacted` reads them."""
    users, items = zip(*(_interacted(split, targets) for split, targets in parts))
    return SeenItems(torch.cat(users), torch.cat(items), train_split.user_num, train_split.item_num)


def phase_seen_items(train_split, valid_split, test_split):
    """``(valid, test)`` SeenItems: the training items; the training and valid items.

    ``train_split`` must hold every training prefix (HyMiRec's strided split keeps the full one
    as ``unstrided_split``). Read from the splits, not from row order: RecBole's ``build``
    re-sorts the augmented rows by time, so a user's rows are no longer together.
    """
    train_split = getattr(train_split, "unstrided_split", train_split)
    valid_seen = seen_in(train_split, (train_split, True), (valid_split, False))
    test_seen = seen_in(train_split, (train_split, True), (valid_split, True), (test_split, False))
    return valid_seen, test_seen


def every_seen_item(train_split, valid_split, test_split):
    """SeenItems of every item of every split, the test targets included: what a user has
    already interacted with when recommendations are served."""
    train_split = getattr(train_split, "unstrided_split", train_split)
    return seen_in(train_split, (train_split, True), (valid_split, True), (test_split, True))


def mask_seen_items(config, train_data, valid_data, test_data):
    """Make a sequential model's valid and test full rankings mask each user's seen items.

    General models need nothing: RecBole already masks their history in full ranking.
    """
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return
    for loader in (valid_data, test_data):
        if not isinstance(loader, FullSortEvalDataLoader):
            raise ConfigError("mask_seen_items applies to full ranking; this run samples "
                              "candidates. Fix: eval_args: {mode: full}, or mask_seen_items: False.")
    valid_seen, test_seen = phase_seen_items(train_data._dataset, valid_data._dataset,
                                             test_data._dataset)
    uid_field = valid_data._dataset.uid_field
    for loader, seen in ((valid_data, valid_seen), (test_data, test_seen)):
        loader.collate_fn = SeenItemMaskingCollate(loader.collate_fn, seen, uid_field)
