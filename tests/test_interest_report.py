"""The interest report: how personal a trained HyMiRec's interests are."""
import json
import os

import pytest
import torch
from recbole.data.interaction import Interaction

from conftest import tiny_hymirec_settings
from recbole_hymirec.data.dataset import UserHistory
from recbole_hymirec.quick_start import run_recbole_hymirec
from recbole_hymirec.tools import interest_report


def test_collapsed_and_orthogonal_interests_read_as_such():
    same_for_everyone = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(5, 2, 2)  # [B, K, d]
    assert interest_report.cross_user_cos(same_for_everyone) == [1.0, 1.0]
    assert interest_report.within_user_cos(same_for_everyone) == 0.0
    opposite_users = torch.tensor([[[1.0, 0.0]], [[-1.0, 0.0]]])  # two users, one interest
    assert interest_report.cross_user_cos(opposite_users) == [-1.0]


def test_swapping_moves_histories_and_keeps_the_rest():
    class Fields:
        ITEM_SEQ, ITEM_SEQ_LEN, USER_ID = "item_id_list", "item_length", "user_id"

    batch = Interaction({"item_id_list": torch.tensor([[1, 2], [3, 4], [5, 6]]),
                         "item_length": torch.tensor([2, 1, 2]), "user_id": torch.tensor([7, 8, 9]),
                         "target_position": torch.tensor([2, 3, 4]), "item_id": torch.tensor([11, 12, 13]),
                         "long_history_id_list": torch.tensor([[1, 0], [2, 3], [4, 0]]),
                         "long_history_length": torch.tensor([1, 2, 1])})
    swapped = interest_report.with_histories_of(batch, Fields, torch.tensor([2, 0, 1]))
    assert swapped["item_id_list"].tolist() == [[5, 6], [1, 2], [3, 4]]
    assert swapped["long_history_id_list"].tolist() == [[4, 0], [1, 0], [2, 3]]
    assert swapped["long_history_length"].tolist() == [1, 1, 2]
    assert swapped["user_id"].tolist() == [9, 7, 8] and swapped["target_position"].tolist() == [4, 2, 3]
    assert swapped["item_id"].tolist() == [11, 12, 13]  # the targets stay with their rows


def test_seen_share_counts_top_items_before_the_target_only():
    user_history = UserHistory(torch.tensor([4, 5, 6, 7]), torch.tensor([0, 0, 4]))
    users, positions = torch.tensor([1, 1]), torch.tensor([2, 3])
    top = torch.tensor([[4, 6], [6, 7]])  # row 0 saw 4, 5; row 1 saw 4, 5, 6 (7 is later)
    assert interest_report.seen_share(user_history, users, positions, top) == 0.5


def test_report_on_a_trained_checkpoint(assets, capsys):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    result = run_recbole_hymirec("HyMiRec", "tiny",
                                 config_dict=tiny_hymirec_settings(data_path, llm_path))
    capsys.readouterr()
    assert interest_report.main([result["saved_model_file"], "--rows", "16", "--k", "5"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("INTERESTS ")][-1]
    report = json.loads(line[len("INTERESTS "):])
    assert report["rows"] == 16
    assert len(report["cross_user_cos"]) == tiny_hymirec_settings(data_path, llm_path)["n_interests"]
    assert all(-1.0 <= c <= 1.0 for c in report["cross_user_cos"] + [report["swapped_history_cos"]])
    assert report["logit_std"] > 0 and report["logit_scale"] > 0
    assert 5 <= report["distinct_top5_items"] <= 16 * 5
    assert 0.0 <= report["seen_share_top5"] <= 1.0


def test_missing_checkpoint_is_one_clear_line(capsys):
    assert interest_report.main(["saved/none.pth"]) == 2
    assert "checkpoint 'saved/none.pth' does not exist" in capsys.readouterr().err
