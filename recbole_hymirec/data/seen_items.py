"""Seen-item masking in the full ranking of sequential models (protocol key ``mask_seen_items``).

RecBole's full ranking masks a user's earlier items for general models (the training items
when validating, training + validation items when testing), but nothing for sequential models:
their rankings keep every item the user has already interacted with. On MovieLens, where no
user rates a movie twice, a model that scores by similarity to what the user read spends top-k
slots on those items. With ``mask_seen_items: True`` the valid and test rankings of every
sequential model mask RecBole's general-model set: each user's items before the phase's first
target. It is a protocol key (the same for every model of a leaderboard), never a model's.
The target is not read to build the mask: a repeated target is masked too, a miss for every model.
"""
import torch
from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader
from recbole.utils import ModelType

from recbole_hymirec.data.dataset import user_sequences
from recbole_hymirec.errors import ConfigError


class SeenItems:
    """The first ``seen_lengths[u]`` items of each user's chronological sequence."""

    def __init__(self, history, seen_lengths):
        self.items = history.items  # [n_interactions], users one after another
        self.starts = history.offsets[:-1]  # [n_user_ids]
        self.lengths = seen_lengths.clamp(min=0)  # [n_user_ids]

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


def _rows_per_user(split):
    return torch.bincount(split.inter_feat[split.uid_field], minlength=split.user_num)  # [n_user_ids]


def phase_seen_items(dataset, valid_split, test_split):
    """``(valid, test)`` SeenItems: the items before each user's first valid (test) target.

    ``dataset`` is the built (augmented) parent of the splits; in time order a user's valid
    and test targets are the last items of its sequence, so counting them back from the end
    gives each phase's boundary without reading a single target.
    """
    if dataset.item_id_list_field not in dataset.inter_feat:
        raise ConfigError("mask_seen_items needs the built sequential dataset (RecBole's "
                          "augmented rows). Fix: run without save_dataloaders / a saved dataloader "
                          "file, or set mask_seen_items: False.")
    history = getattr(dataset, "user_history", None) or user_sequences(dataset)
    test_rows = _rows_per_user(test_split)  # [n_user_ids]
    valid_rows = _rows_per_user(valid_split)  # [n_user_ids]
    return (SeenItems(history, history.lengths - test_rows - valid_rows),
            SeenItems(history, history.lengths - test_rows))


def mask_seen_items(config, dataset, valid_data, test_data):
    """Make a sequential model's valid and test full rankings mask each user's seen items.

    General models need nothing: RecBole already masks their history in full ranking.
    """
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return
    for loader in (valid_data, test_data):
        if not isinstance(loader, FullSortEvalDataLoader):
            raise ConfigError("mask_seen_items applies to full ranking; this run samples "
                              "candidates. Fix: eval_args: {mode: full}, or mask_seen_items: False.")
    valid_seen, test_seen = phase_seen_items(dataset, valid_data._dataset, test_data._dataset)
    for loader, seen in ((valid_data, valid_seen), (test_data, test_seen)):
        loader.collate_fn = SeenItemMaskingCollate(loader.collate_fn, seen, dataset.uid_field)
