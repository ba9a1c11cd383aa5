"""mask_seen_items: a sequential model's full ranking masks exactly the user's earlier items."""
import numpy as np
import pytest
import torch
from recbole.trainer import Trainer

from conftest import TINY_RUN, true_sequences, write_tiny_dataset
from recbole_hymirec.config import Config
from recbole_hymirec.data.dataset import HyMiRecDataset
from recbole_hymirec.data.seen_items import SeenItems, phase_seen_items
from recbole_hymirec.errors import ConfigError
from recbole_hymirec.quick_start import _build
from recbole_hymirec.utils import create_dataset


@pytest.fixture
def interleaved_data_path(tmp_path):
    """The tiny dataset with users taking turns in time: RecBole's time sort splits them up."""
    write_tiny_dataset(str(tmp_path / "data"), interleaved=True)
    return str(tmp_path / "data")


def _config(data_path, model="SASRec", **overrides):
    return Config(model, "tiny", config_dict=dict(TINY_RUN, data_path=data_path, **overrides))


@pytest.mark.parametrize("dataset_class", ["recbole", "hymirec_strided"])
def test_phase_masks_are_the_items_before_the_valid_and_test_targets(interleaved_data_path,
                                                                      dataset_class):
    if dataset_class == "recbole":
        dataset = create_dataset(_config(interleaved_data_path))
    else:  # HyMiRec's training split keeps every 3rd prefix: the mask must not follow it
        dataset = HyMiRecDataset(_config(interleaved_data_path, long_seq_len=10, train_stride=3))
    train_split, valid_split, test_split = dataset.build()
    valid_seen, test_seen = phase_seen_items(train_split, valid_split, test_split)
    truth = true_sequences(interleaved_data_path, dataset)
    for user, sequence in truth.items():
        assert valid_seen.of_user(user).tolist() == sorted(set(sequence[:-2]))  # LS: valid = 2nd to last
        assert test_seen.of_user(user).tolist() == sorted(set(sequence[:-1]))  # + the valid item


def test_index_lists_each_rows_seen_items_in_batch_order():
    # user 1 saw 7, 5, 6, 5 (a repeat); user 2 saw 9, 8; user 0 nothing
    seen = SeenItems(torch.tensor([1, 2, 1, 1, 2, 1]), torch.tensor([7, 9, 5, 6, 8, 5]),
                     n_user_ids=3, n_item_ids=11)
    rows, items = seen.index(torch.tensor([2, 1, 2, 0]))
    assert rows.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert items.tolist() == [8, 9, 5, 6, 7, 8, 9]


def _eval_scores(config, loader, model):
    trainer = Trainer(config, model)
    trainer.tot_item_num = loader._dataset.item_num  # set by Trainer.evaluate otherwise
    for batch in loader:
        interaction, scores, _, _ = trainer._full_sort_batch_eval(batch)
        yield interaction, scores


def test_full_ranking_scores_of_seen_items_are_minus_inf(interleaved_data_path):
    config = _config(interleaved_data_path, mask_seen_items=True)
    dataset, _, valid_data, test_data, model = _build(config)
    truth = true_sequences(interleaved_data_path, dataset)
    for loader, cut in ((valid_data, -2), (test_data, -1)):
        checked = 0
        for interaction, scores in _eval_scores(config, loader, model):
            for row, user in enumerate(interaction["user_id"].tolist()):
                masked = set(torch.nonzero(scores[row] == -np.inf).squeeze(1).tolist())
                assert masked == set(truth[user][:cut]) | {0}  # item 0 is padding
                checked += 1
        assert checked == len(truth)


def test_without_the_key_nothing_but_padding_is_masked(tiny_data_path):
    config = _config(tiny_data_path)
    assert config["mask_seen_items"] is False  # the plugin-wide default
    _, _, _, test_data, model = _build(config)
    _, scores = next(_eval_scores(config, test_data, model))
    assert torch.isinf(scores).sum().item() == scores.shape[0]  # column 0 only


def test_sampled_evaluation_with_the_mask_is_refused(tiny_data_path):
    config = _config(tiny_data_path, mask_seen_items=True,
                     eval_args={"split": {"LS": "valid_and_test"}, "order": "TO",
                                "mode": "uni20"})
    with pytest.raises(ConfigError, match=r"mask_seen_items applies to full ranking.*"
                                          r"Fix: eval_args: \{mode: full\}"):
        _build(config)


def test_a_non_boolean_value_is_refused(tiny_data_path):
    with pytest.raises(ConfigError, match="mask_seen_items='yes' must be true or false"):
        _config(tiny_data_path, mask_seen_items="yes")
