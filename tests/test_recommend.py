"""tools/recommend.py: top-k per user from a checkpoint, seen items excluded, new items added
without retraining."""
import csv
import json
import os

import pytest
import torch

from conftest import tiny_hymirec_settings
from recbole_hymirec.quick_start import load_data_and_model, run_recbole_hymirec
from recbole_hymirec.tools import recommend

K = 5


@pytest.fixture(scope="module")
def trained(assets):
    data_path, llm_path, cache = assets
    os.environ["HYMIREC_CACHE"] = cache
    result = run_recbole_hymirec("HyMiRec", "tiny", config_dict=tiny_hymirec_settings(
        data_path, llm_path, n_interests=3))
    return os.path.abspath(result["saved_model_file"]), data_path


def user_sequences(data_path):
    """user token -> every item token it interacted with, read from the atomic file."""
    seen = {}
    with open(os.path.join(data_path, "tiny", "tiny.inter")) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            seen.setdefault(row["user_id:token"], set()).add(row["item_id:token"])
    return seen


def write_new_items(path):
    """Two new items: one with the text of catalogue item 5, one of a new genre; and item 7,
    which the dataset has (skipped)."""
    with open(path, "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        f.write("n1\tMovie Number 5\t1985\tSci-Fi\n")
        f.write("n2\tA Brand New Film\t2024\tDocumentary\n")
        f.write("7\tMovie Number 7\t1987\tComedy\n")
    return str(path)


def run_main(capsys, argv):
    capsys.readouterr()
    assert recommend.main(argv) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RECOMMEND ")][-1]
    return json.loads(line[len("RECOMMEND "):])


def test_csv_holds_topk_unseen_items_per_user_with_their_interest(trained, tmp_path, capsys):
    checkpoint, data_path = trained
    out = str(tmp_path / "recs.csv")
    report = run_main(capsys, [checkpoint, "--out", out, f"--topk={K}"])
    sequences = user_sequences(data_path)
    assert report == {"out": out, "format": "csv", "users": len(sequences), "topk": K,
                      "items": 30, "new_items": 0}
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(recommend.CSV_HEADER)
    by_user = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row)
    assert set(by_user) == set(sequences)
    for user, ranked in by_user.items():
        assert [int(r["rank"]) for r in ranked] == list(range(1, K + 1))
        assert not {r["item_id"] for r in ranked} & sequences[user]
        scores = [float(r["score"]) for r in ranked]
        assert scores == sorted(scores, reverse=True)
        assert {int(r["interest"]) for r in ranked} <= {0, 1, 2}


def test_scores_are_the_models_full_ranking(trained, tmp_path, capsys):
    checkpoint, _ = trained
    out = str(tmp_path / "recs.jsonl")
    run_main(capsys, [checkpoint, "--out", out, f"--topk={K}"])
    with open(out) as f:
        first = json.loads(f.readline())
    _, model, dataset, _, _, test_data = load_data_and_model(checkpoint)
    model.eval()
    batch = next(iter(test_data))[0]
    row = batch[model.USER_ID].tolist().index(int(dataset.token2id("user_id", first["user_id"])))
    with torch.no_grad():
        scores = model.full_sort_predict(batch)[row]
        interests = model.ranking_interests(batch)[row]  # [K, d]
        tower = model.item_embeddings()
    for entry in first["items"]:
        item = int(dataset.token2id("item_id", entry["item_id"]))
        assert entry["score"] == pytest.approx(float(scores[item]), abs=1e-5)
        per_interest = torch.cosine_similarity(interests, tower[item].unsqueeze(0), dim=1)
        assert entry["interest"] == int(per_interest.argmax())
        assert entry["new"] is False


def test_new_items_are_coded_with_the_fitted_codebook_and_recommended(trained, tmp_path, capsys):
    checkpoint, _ = trained
    new_file = write_new_items(tmp_path / "fresh.item")
    config, model, dataset, _, _, test_data = load_data_and_model(checkpoint)
    codebook_before = {k: v.clone() for k, v in model.codebook.state_dict().items()}
    n_items = model.n_items
    tokens = recommend.add_new_items(config, model, dataset, new_file)
    assert tokens == ["n1", "n2"] and model.n_items == n_items + 2
    assert model.item_codes.shape[0] == n_items + 2
    assert all(torch.equal(v, codebook_before[k]) for k, v in model.codebook.state_dict().items())
    twin = int(dataset.token2id("item_id", "5"))
    # the same text as item 5: the same embedding, codes and score for every user
    assert torch.allclose(model.item_content[n_items], model.item_content[twin], atol=1e-4)
    assert torch.equal(model.item_codes[n_items], model.item_codes[twin])
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(next(iter(test_data))[0])  # [B, n_items + 2]
    assert scores.shape[1] == n_items + 2
    assert torch.allclose(scores[:, n_items], scores[:, twin], atol=1e-4)

    out = str(tmp_path / "recs.jsonl")
    report = run_main(capsys, [checkpoint, "--out", out, "--topk=32", "--new_items", new_file])
    assert (report["items"], report["new_items"]) == (32, 2)
    with open(out) as f:
        lists = [json.loads(line)["items"] for line in f]
    for items in lists:  # every unseen item, the new ones included and flagged
        assert {"n1", "n2"} <= {e["item_id"] for e in items}
        assert all(e["new"] == (e["item_id"] in ("n1", "n2")) for e in items)


def test_bad_arguments_are_one_line_errors(trained, tmp_path, capsys):
    checkpoint, _ = trained
    assert recommend.main([checkpoint, "--out", str(tmp_path / "recs.txt")]) == 2
    assert "cannot tell the output format of" in capsys.readouterr().err
    assert recommend.main([checkpoint, "--out", str(tmp_path / "r.csv"), "--topk=0"]) == 2
    assert "--topk=0 must be an integer >= 1. Fix: --topk=10." in capsys.readouterr().err
    known = tmp_path / "known.item"
    known.write_text("item_id:token\tmovie_title:token_seq\n7\tMovie Number 7\n")
    assert recommend.main([checkpoint, "--out", str(tmp_path / "r.csv"), "--new_items",
                           str(known)]) == 2
    assert "every item of" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r.csv")
