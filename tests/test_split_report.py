"""The split report: NDCG of training-free scorers on the valid and the test rows."""
import json

import pytest
import torch

from conftest import tiny_hymirec_settings
from tiny_llm import make_tiny_llm
from recbole_hymirec.tools import split_report


def test_ndcg_counts_the_rank_of_the_target_and_never_the_padding_column():
    scores = torch.tensor([[9.0, 5.0, 4.0, 3.0, 2.0],    # target 1 ranked first (padding ignored)
                           [9.0, 5.0, 4.0, 3.0, 2.0],    # target 3 ranked third
                           [0.0, 5.0, 4.0, 3.0, 2.0]])   # target 4 ranked fourth: beyond k=3
    targets = torch.tensor([1, 3, 4])
    expected = (1.0 + 1.0 / torch.log2(torch.tensor(4.0)).item() + 0.0) / 3
    assert split_report.ndcg_at_k(scores, targets, k=3) == pytest.approx(expected)


def test_seen_items_drop_out_of_a_reference_ranking():
    class Seen:
        @staticmethod
        def index(users):
            return torch.tensor([0, 0, 1]), torch.tensor([1, 2, 4])  # row 0 saw 1, 2; row 1 saw 4

    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0], [0.0, 5.0, 4.0, 3.0, 2.0]])
    masked = split_report.without_seen(scores, Seen, torch.tensor([7, 8]))
    assert split_report.ndcg_at_k(masked, torch.tensor([3, 3]), k=1) == pytest.approx(0.5)
    assert split_report.without_seen(scores, None, None) is scores


@pytest.mark.parametrize("mask", [False, True])
def test_report_covers_every_user_once_per_split(tiny_data_path, tmp_path, capsys, mask):
    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"), mask_seen_items=mask)
    argv = ["-d", "tiny", "--k", "5"] + [
        f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
    assert split_report.main(argv) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("SPLIT ")]
    report = json.loads(lines[-1][len("SPLIT "):])
    assert report["mask_seen_items"] is mask
    for split in ("valid", "test"):
        assert report[split]["rows"] == 40  # one row per user of the tiny dataset
        assert 0.0 <= report[split]["popularity_ndcg@5"] <= 1.0
        assert 0.0 <= report[split]["content_last_item_ndcg@5"] <= 1.0
        assert -1.0 <= report[split]["cos_last_item_target"] <= 1.0
    if mask:  # the tiny users repeat items: their seen targets are masked, misses for all
        return
    ratio = report["test_over_valid"]["popularity_ndcg@5"]
    assert ratio == pytest.approx(report["test"]["popularity_ndcg@5"]
                                  / report["valid"]["popularity_ndcg@5"], abs=1e-3)
