"""The cost-versus-history-length curve: its histories and the files it writes (no timing
asserted)."""
import csv
import json

import pytest
import torch

from conftest import tiny_hymirec_settings
from tiny_llm import make_tiny_llm
from recbole_hymirec.data.dataset import UserHistory
from recbole_hymirec.model import llm
from recbole_hymirec.tools import efficiency


def test_extended_histories_keep_the_users_items_last_and_fill_before_them():
    # user 0: items 5 6 7 8; user 1: items 9 10
    history = UserHistory(torch.tensor([5, 6, 7, 8, 9, 10]), torch.tensor([0, 4, 6]))
    generator = torch.Generator().manual_seed(0)
    items, own = efficiency.extended_histories(history, torch.tensor([0, 1]),
                                               torch.tensor([3, 2]), width=5, n_items=50,
                                               generator=generator)
    assert own.tolist() == [3, 2]
    assert items.shape == (2, 5)
    assert items[0, 2:].tolist() == [5, 6, 7]  # the three items before position 3, last
    assert items[1, 3:].tolist() == [9, 10]
    drawn = torch.cat([items[0, :2], items[1, :3]])
    assert ((drawn >= 1) & (drawn < 50)).all()  # catalogue ids, never the padding id 0


def test_parse_lengths_refuses_what_is_not_a_length():
    assert efficiency.parse_lengths("100,50,100") == [50, 100]
    with pytest.raises(SystemExit, match=r"--lengths '50,x' is not a list of positive "
                                         r"integers. Fix: --lengths 50,100,200"):
        efficiency.parse_lengths("50,x")


def test_curve_writes_csv_md_and_png_for_every_length(tiny_data_path, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.setattr(llm, "cpu_flags", lambda: {"avx2"})  # auto = fp32 on any CPU
    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"))
    del settings["long_seq_len"]  # the curve sets it to each length
    out = tmp_path / "pages" / "efficiency"
    argv = ["-d", "tiny", "--lengths", "6,20", "--batch", "8", "--single_rows", "2",
            "--repeats", "1", "--device", "cpu", "--out", str(out)] + [
        f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
    assert efficiency.main(argv) == 0, capsys.readouterr().err
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("EFFICIENCY "))
    assert len(json.loads(line[len("EFFICIENCY "):])["points"]) == 4

    with open(f"{out}.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == efficiency.CSV_COLUMNS
    # tiny users hold 8 to 16 items: a longer history holds a smaller share of their own
    assert float(rows[2]["own_items_share"]) < float(rows[0]["own_items_share"]) <= 1
    assert [(r["history_length"], r["model"]) for r in rows] == [
        ("6", "HyMiRec"), ("6", "full_history"), ("20", "HyMiRec"), ("20", "full_history")]
    assert {r["batch"] for r in rows} == {"8"}
    # 3 uint8 codes per item and 4 recent fp32 embeddings of the tiny LLM's 32 dimensions
    assert rows[2]["bytes_per_user"] == str(20 * 3 + 4 * 32 * 4)
    assert rows[3]["bytes_per_user"] == str(20 * 32 * 4)

    page = (tmp_path / "pages" / "efficiency.md").read_text()
    assert "| L | HyMiRec batch 1 | full history batch 1 | ratio | HyMiRec batch 8 |" in page
    assert "\n| 6 | " in page and "\n| 20 | " in page
    assert "python -m recbole_hymirec.tools.efficiency -d tiny --lengths 6,20" in page
    assert (tmp_path / "pages" / "efficiency.png").read_bytes()[:4] == b"\x89PNG"
