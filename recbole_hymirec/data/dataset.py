"""HyMiRecDataset: RecBole's sequential dataset plus long histories and target windows.

RecBole's augmentation stores a dense ``[rows, MAX_ITEM_LIST_LENGTH]`` history per field,
which explodes for long histories. Here ``MAX_ITEM_LIST_LENGTH`` stays the short recent
window ``N`` fed to the LLM, and the long history comes from one per-user table:

* ``UserHistory``: every user's full chronological item sequence, stored flat (CSR:
  ``items`` + ``offsets``), so memory is the number of interactions, whatever
  ``long_seq_len`` is;
* a per-row field ``target_position``: how many of the user's items precede the row's
  target.

A batch fetches ``items[offsets[u] + pos - long_seq_len : offsets[u] + pos]`` (strictly
before the target) and, for training rows, the next ``dmil_window`` targets
``[pos, min(pos + W, train_end[u]))`` where ``train_end[u]`` is the first position that is
not a training target of ``u``: valid/test items never reach a training row.
"""
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType

from recbole_hymirec.errors import ConfigError

TARGET_POSITION_FIELD = "target_position"


def training_item_counts(train_dataset):
    """Interactions per item id in a training split ``[item_num]`` (row 0, padding, is 0)."""
    counts = torch.zeros(train_dataset.item_num)
    for item, count in train_dataset.item_counter.items():
        counts[int(item)] = count
    return counts


class UserHistory:
    """Each user's full item sequence (chronological), stored flat, plus the training end."""

    def __init__(self, items, offsets):
        self.items = items  # [n_interactions] item ids, users one after another
        self.offsets = offsets  # [n_user_ids + 1] start of each user's sequence in ``items``
        self.train_end = self.lengths.clone()  # [n_user_ids] set from the split by ``set_train_end``

    @property
    def lengths(self):
        return self.offsets[1:] - self.offsets[:-1]  # [n_user_ids]

    def set_train_end(self, user_ids, positions):
        """``train_end[u]`` = 1 + the largest training-target position of ``u`` (0 if none)."""
        train_end = torch.zeros_like(self.lengths)
        train_end.scatter_reduce_(0, user_ids, positions + 1, reduce="amax")
        self.train_end = train_end

    def gather(self, user_ids, starts, counts, width):
        """Items at positions ``starts .. starts + counts - 1`` of each user's sequence.

        Returns (items ``[B, width]`` left-aligned and zero-padded, the positions read
        ``[B, width]``, and their validity mask ``[B, width]``).
        """
        steps = torch.arange(width)  # [W]
        positions = starts.unsqueeze(1) + steps  # [B, W]
        valid = steps.unsqueeze(0) < counts.unsqueeze(1)  # [B, W]
        index = torch.where(valid, self.offsets[user_ids].unsqueeze(1) + positions, 0)  # [B, W]
        items = torch.where(valid, self.items[index], 0)  # [B, W]
        return items, positions, valid

    def history(self, user_ids, positions, length):
        """The ``length`` most recent items strictly before each target.

        Returns (items ``[B, length]`` left-aligned and zero-padded, lengths ``[B]``).
        """
        user_ids, positions = user_ids.cpu(), positions.cpu()
        starts = (positions - length).clamp(min=0)  # [B]
        counts = positions - starts  # [B]
        items, _, _ = self.gather(user_ids, starts, counts, length)
        return items, counts

    def before(self, user_ids, positions):
        """Every item strictly before each target ``[B, max position]`` (0 = padding)."""
        return self.history(user_ids, positions, int(positions.max()))[0]

    def target_window(self, user_ids, positions, size):
        """Up to ``size`` training targets from each row's own target on (inclusive).

        Returns (items ``[B, size]`` left-aligned and zero-padded, counts ``[B]``).
        """
        user_ids, positions = user_ids.cpu(), positions.cpu()
        ends = torch.minimum(positions + size, self.train_end[user_ids])  # [B]
        counts = (ends - positions).clamp(min=0)  # [B]
        items, _, _ = self.gather(user_ids, positions, counts, size)
        return items, counts


class HyMiRecDataset(SequentialDataset):
    """Sequential dataset whose rows also index a long history and a target window.

    Config keys: ``MAX_ITEM_LIST_LENGTH`` (recent window N), ``long_seq_len``,
    ``dmil_window``, ``train_stride`` (keep every k-th training prefix per user).
    """

    def __init__(self, config):
        self.long_seq_len = config["long_seq_len"] or config["MAX_ITEM_LIST_LENGTH"]
        self.dmil_window = config["dmil_window"] or 1
        self.train_stride = config["train_stride"] or 1
        self._check_lengths(config)
        self.user_history = None
        super().__init__(config)

    def _check_lengths(self, config):
        recent = config["MAX_ITEM_LIST_LENGTH"]
        if self.long_seq_len < recent:
            raise ConfigError(
                f"long_seq_len={self.long_seq_len} is shorter than the recent window "
                f"MAX_ITEM_LIST_LENGTH={recent}. Fix: set long_seq_len >= {recent}."
            )
        for key, value in (("dmil_window", self.dmil_window), ("train_stride", self.train_stride)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r} must be an integer >= 1. Fix: set --{key}=1 or more.")

    def data_augmentation(self):
        super().data_augmentation()
        user_ids = self.inter_feat[self.uid_field]  # [rows], grouped by user in time order
        positions = self._positions_within_user(user_ids)  # [rows]
        self.user_history = self._build_user_history(user_ids, positions)
        self.set_field_property(TARGET_POSITION_FIELD, FeatureType.TOKEN,
                                FeatureSource.INTERACTION, 1)
        self.inter_feat.update(Interaction({TARGET_POSITION_FIELD: positions}))

    @staticmethod
    def _positions_within_user(user_ids):
        """Row r of a user whose rows start at f predicts that user's item at position r - f + 1."""
        rows = torch.arange(len(user_ids))
        new_user = torch.ones_like(user_ids, dtype=torch.bool)
        new_user[1:] = user_ids[1:] != user_ids[:-1]
        first_row = torch.cummax(torch.where(new_user, rows, torch.zeros_like(rows)), 0).values
        return rows - first_row + 1

    def _build_user_history(self, user_ids, positions):
        """Full sequences = first history item of each user's first row + every row's target."""
        targets = self.inter_feat[self.iid_field]  # [rows]
        first_rows = torch.nonzero(positions == 1).squeeze(1)  # [users]
        first_items = self.inter_feat[self.item_id_list_field][first_rows, 0]  # [users]
        n_user_ids = self.user_num
        lengths = torch.zeros(n_user_ids, dtype=torch.long)
        lengths.index_add_(0, user_ids, torch.ones_like(user_ids))
        lengths[user_ids[first_rows]] += 1  # the first item is no row's target
        offsets = torch.zeros(n_user_ids + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        items = torch.zeros(int(offsets[-1]), dtype=targets.dtype)
        items[offsets[user_ids] + positions] = targets
        items[offsets[user_ids[first_rows]]] = first_items
        return UserHistory(items, offsets)

    def build(self):
        datasets = super().build()
        train = datasets[0]
        self.user_history.set_train_end(train.inter_feat[self.uid_field],
                                        train.inter_feat[TARGET_POSITION_FIELD])
        if self.train_stride > 1:
            datasets[0] = self._strided_copy(train)
        return datasets

    def _strided_copy(self, train):
        strided = train.copy(train.inter_feat[self._stride_mask(train.inter_feat)])
        strided.unstrided_split = train
        return strided

    @property
    def item_counter(self):
        """Item counts of the training split. A strided copy reports the counts of every
        training prefix, not of the rows it kept: RecBole's popularity metrics read this
        counter, and they must count popularity the same way for every model."""
        unstrided = getattr(self, "unstrided_split", None)
        return unstrided.item_counter if unstrided is not None else super().item_counter

    def _stride_mask(self, inter_feat):
        """Keep every ``train_stride``-th training prefix, counted back from the last one."""
        user_ids, positions = inter_feat[self.uid_field], inter_feat[TARGET_POSITION_FIELD]
        from_last = self.user_history.train_end[user_ids] - 1 - positions  # [rows]
        return from_last % self.train_stride == 0
