"""What HyMiRec reads besides RecBole's sequence fields, attached to every batch by its loaders.

RecBole's loaders pass each batch through ``transform(dataset, interaction)`` when they build it,
on the CPU (in the loader's workers, if any). :class:`UserHistoryTransform` adds, from the
dataset's per-user table (``HyMiRecDataset.user_history``), the fields the model reads; they
travel to the device with the batch (``Interaction.to``), so the model reads the interaction
only, as SASRec does, and never the dataset:

* the long history, ``long_seq_len`` item ids left-aligned and zero-padded ``[B, L]`` with
  their count ``[B]``: the items strictly before the row's target (``long_history_*``), or,
  when the lightweight branch reads ``coarse_history: before_window``, those strictly before
  the recent window (``history_before_window_*``); nothing with ``use_long_history: False``;
* training batches only: the next ``dmil_window`` training targets ``[B, W]`` (0 = padding;
  never a valid or test item), and with ``loss_masks_seen`` every item before the target
  ``[B, S]``, entry ``j`` being the user's item at position ``j`` (0 = padding).
"""
from recbole.data.interaction import Interaction

from recbole_hymirec.data.dataset import TARGET_POSITION_FIELD

LONG_HISTORY_FIELD = "long_history_id_list"
LONG_HISTORY_LENGTH_FIELD = "long_history_length"
HISTORY_BEFORE_WINDOW_FIELD = "history_before_window_id_list"
HISTORY_BEFORE_WINDOW_LENGTH_FIELD = "history_before_window_length"
TARGET_WINDOW_FIELD = "target_window_id_list"
SEEN_ITEMS_FIELD = "seen_item_id_list"

# fields that describe a row's history: a row given another row's history takes these too
HISTORY_FIELDS = (LONG_HISTORY_FIELD, LONG_HISTORY_LENGTH_FIELD, HISTORY_BEFORE_WINDOW_FIELD,
                  HISTORY_BEFORE_WINDOW_LENGTH_FIELD)


def history_field_pair(config):
    """``(ids field, length field)`` of the long history the model reads, None without one.

    The lightweight branch runs with ``refiner_reads: hybrid``; with ``coarse_history:
    before_window`` it reads the history before the LLM's window. Otherwise (the branch on the
    history up to the target, or the LLM reading the history itself) it ends at the target.
    """
    if not config["use_long_history"]:
        return None
    if config["refiner_reads"] == "hybrid" and config["coarse_history"] == "before_window":
        return HISTORY_BEFORE_WINDOW_FIELD, HISTORY_BEFORE_WINDOW_LENGTH_FIELD
    return LONG_HISTORY_FIELD, LONG_HISTORY_LENGTH_FIELD


class UserHistoryTransform:
    """A RecBole batch transform: ``base`` (RecBole's own, from the ``transform`` key), then the
    user-history fields HyMiRec reads under ``config``; ``training`` adds the target window and
    the seen items."""

    def __init__(self, config, training, base):
        self.base = base
        self.training = training
        self.history_fields = history_field_pair(config)
        self.adds_seen_items = training and bool(config["loss_masks_seen"])
        self.uid_field = config["USER_ID_FIELD"]
        self.item_seq_len_field = config["ITEM_LIST_LENGTH_FIELD"]

    def __call__(self, dataset, interaction):
        interaction = self.base(dataset, interaction)
        history = dataset.user_history
        users, positions = interaction[self.uid_field], interaction[TARGET_POSITION_FIELD]  # [B]
        fields = {}
        if self.history_fields is not None:
            ids_field, length_field = self.history_fields
            end = positions  # [B]
            if ids_field == HISTORY_BEFORE_WINDOW_FIELD:
                end = positions - interaction[self.item_seq_len_field]  # [B] the window's start
            fields[ids_field], fields[length_field] = history.history(
                users, end, dataset.long_seq_len)  # [B, L], [B]
        if self.training:
            fields[TARGET_WINDOW_FIELD] = history.target_window(
                users, positions, dataset.dmil_window)[0]  # [B, W]
        if self.adds_seen_items:
            fields[SEEN_ITEMS_FIELD] = history.before(users, positions)  # [B, S]
        interaction.update(Interaction(fields))
        return interaction


def attach_user_history(config, train_data, valid_data, test_data):
    """Give the three loaders of a HyMiRecDataset the :class:`UserHistoryTransform`."""
    for loader, training in ((train_data, True), (valid_data, False), (test_data, False)):
        loader.transform = UserHistoryTransform(config, training, loader.transform)
