"""HyMiRecDataset: long history and target window never leak, memory is per user."""
import collections

import pytest
import torch

from conftest import TINY_RUN, true_sequences
from recbole_hymirec.config import Config
from recbole_hymirec.data.dataset import TARGET_POSITION_FIELD, HyMiRecDataset
from recbole_hymirec.errors import ConfigError

RECENT, LONG, WINDOW = 3, 8, 4


def _config(data_path, **overrides):
    values = dict(TINY_RUN, data_path=data_path, MAX_ITEM_LIST_LENGTH=RECENT,
                  long_seq_len=LONG, dmil_window=WINDOW, train_stride=1)
    values.update(overrides)
    return Config("SASRec", "tiny", config_dict=values)


@pytest.fixture
def built(tiny_data_path):
    dataset = HyMiRecDataset(_config(tiny_data_path))
    splits = dataset.build()
    return dataset, splits, true_sequences(tiny_data_path, dataset)


def _rows(split):
    feat = split.inter_feat
    return feat["user_id"], feat[TARGET_POSITION_FIELD], feat["item_id"]


def test_user_table_is_thetrue_sequences(built):
    dataset, _, truth = built
    history = dataset.user_history
    for user, seq in truth.items():
        start, end = history.offsets[user], history.offsets[user + 1]
        assert history.items[start:end].tolist() == seq


def test_history_is_strictly_before_the_target_in_every_split(built):
    dataset, splits, truth = built
    for split in splits:
        users, positions, targets = _rows(split)
        items, lengths = dataset.user_history.history(users, positions, LONG)
        recent = split.inter_feat["item_id_list"]
        for u, p, t, row, n, rec in zip(users.tolist(), positions.tolist(), targets.tolist(),
                                        items.tolist(), lengths.tolist(), recent.tolist()):
            seq = truth[u]
            assert seq[p] == t
            expected = seq[max(0, p - LONG):p]
            assert n == len(expected) and row[:n] == expected and all(x == 0 for x in row[n:])
            assert rec[:min(p, RECENT)] == seq[max(0, p - RECENT):p]  # RecBole's recent window


def test_window_stays_inside_the_training_part(built):
    dataset, (train, valid, test), truth = built
    users, positions, _ = _rows(train)
    items, counts = dataset.user_history.target_window(users, positions, WINDOW)
    for u, p, row, n in zip(users.tolist(), positions.tolist(), items.tolist(), counts.tolist()):
        train_end = len(truth[u]) - 2  # leave-one-out: the last two are valid and test
        assert int(dataset.user_history.train_end[u]) == train_end
        assert p < train_end and n >= 1
        assert row[:n] == truth[u][p:min(p + WINDOW, train_end)]
    for split, back in ((valid, 2), (test, 1)):
        users, positions, _ = _rows(split)
        assert all(p == len(truth[u]) - back for u, p in zip(users.tolist(), positions.tolist()))


def test_valid_and_test_targets_never_reach_a_training_row(built):
    dataset, (train, valid, test), _ = built
    history = dataset.user_history
    users, positions, _ = _rows(train)
    # every position a training row reads: its long history and its target window
    starts = (positions - LONG).clamp(min=0)
    _, read_history, ok_history = history.gather(users, starts, positions - starts, LONG)
    _, counts = history.target_window(users, positions, WINDOW)
    _, read_window, ok_window = history.gather(users, positions, counts, WINDOW)
    eval_positions = {(u, p) for split in (valid, test)
                      for u, p in zip(*[t.tolist() for t in _rows(split)[:2]])}
    for read, ok in ((read_history, ok_history), (read_window, ok_window)):
        owners = users.unsqueeze(1).expand_as(read)
        pairs = set(zip(owners[ok].tolist(), read[ok].tolist()))
        assert pairs and not pairs & eval_positions
    assert (read_history[ok_history] < positions.unsqueeze(1).expand_as(read_history)[ok_history]).all()


def test_memory_is_per_user_not_rows_times_long_seq_len(tiny_data_path):
    sizes = []
    for long_seq_len in (LONG, 500):
        dataset = HyMiRecDataset(_config(tiny_data_path, long_seq_len=long_seq_len))
        dataset.build()
        sizes.append(dataset.user_history.items.numel())
        widths = [v.shape[1] for v in dataset.inter_feat.interaction.values() if v.dim() > 1]
        assert max(widths) == RECENT  # no per-row field as wide as long_seq_len
    n_interactions = sum(len(s) for s in true_sequences(tiny_data_path, dataset).values())
    assert sizes == [n_interactions, n_interactions]


def test_train_stride_keeps_every_kth_prefix_and_leaves_eval_untouched(tiny_data_path):
    full = HyMiRecDataset(_config(tiny_data_path)).build()
    strided_dataset = HyMiRecDataset(_config(tiny_data_path, train_stride=3))
    strided = strided_dataset.build()
    users, positions, _ = _rows(strided[0])
    train_end = strided_dataset.user_history.train_end[users]
    assert ((train_end - 1 - positions) % 3 == 0).all()
    assert len(strided[0]) < len(full[0])
    assert len(set(users.tolist())) == len(set(full[0].inter_feat["user_id"].tolist()))
    for a, b in zip(full[1:], strided[1:]):
        assert torch.equal(a.inter_feat[TARGET_POSITION_FIELD], b.inter_feat[TARGET_POSITION_FIELD])


def test_long_history_shorter_than_recent_window_is_refused(tiny_data_path):
    with pytest.raises(ConfigError, match=r"long_seq_len=2 is shorter than the recent window "
                                          r"MAX_ITEM_LIST_LENGTH=3\. Fix: set long_seq_len >= 3"):
        HyMiRecDataset(_config(tiny_data_path, long_seq_len=2))


def test_strided_training_split_counts_popularity_over_every_prefix(tiny_data_path):
    """Popularity metrics and the popularity prior read item_counter: striding must not
    shrink it, or HyMiRec's AveragePopularity would not be comparable with the baselines'."""
    full = HyMiRecDataset(_config(tiny_data_path)).build()[0]
    strided = HyMiRecDataset(_config(tiny_data_path, train_stride=3)).build()[0]
    kept_rows = collections.Counter(strided.inter_feat["item_id"].tolist())
    assert sum(kept_rows.values()) < sum(full.item_counter.values())
    assert strided.item_counter == full.item_counter
