"""tools/prepare.py: Amazon Reviews 2023 and PixelRec raw files -> RecBole atomic files."""
import csv
import gzip
import json
import os

import pytest

from recbole_hymirec.errors import ConfigError
from recbole_hymirec.tools import prepare
from recbole_hymirec.tools.prepare import MalformedLineError, k_core

# user -> items in time order; u4 reviews an item without metadata, u5 has one review only.
AMAZON_HISTORIES = {"u1": ["A", "B", "C"], "u2": ["A", "B", "C"], "u3": ["B", "C", "A"],
                    "u4": ["A", "NOMETA"], "u5": ["C"]}


def amazon_meta():
    return [
        {"parent_asin": "A", "title": "Dune\tNovel", "description": ["Desert planet.", "Spice."],
         "features": ["Paperback"], "categories": ["Books", "Science Fiction"], "price": None},
        {"parent_asin": "B", "title": "Emma", "description": [], "features": [], "categories": []},
        {"parent_asin": "C", "title": "Ulysses\nby Joyce", "description": "One day.",
         "features": ["Hardcover", "700 pages"], "categories": ["Books"]},
    ]


def amazon_reviews():
    reviews = []
    for user_number, (user, items) in enumerate(AMAZON_HISTORIES.items()):
        for step, item in enumerate(items):
            reviews.append({"rating": 4.0 + step % 2, "title": "t", "text": "x", "asin": item,
                            "parent_asin": item, "user_id": user, "verified_purchase": True,
                            "timestamp": 1_600_000_000_000 + 1000 * (10 * user_number + step)})
    return reviews


def write_jsonl(path, records, extra_lines=()):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture
def amazon_files(tmp_path):
    return (write_jsonl(str(tmp_path / "Books.jsonl.gz"), amazon_reviews()),
            write_jsonl(str(tmp_path / "meta_Books.jsonl"), amazon_meta()))


def run_amazon(reviews, meta, out, *extra):
    return prepare.main(["amazon2023", "--reviews", reviews, "--meta", meta, "--out", out, *extra])


def test_amazon_files_hold_the_k_core_in_time_order_with_item_text(amazon_files, tmp_path, capsys):
    out = str(tmp_path / "data")
    assert run_amazon(*amazon_files, out, "--k_core=2") == 0
    report = json.loads(capsys.readouterr().out.split("PREPARE ", 1)[1])
    assert report == {"folder": os.path.join(out, "amazon-books"), "raw_interactions": 11,
                      "interactions": 9, "k_core": 2, "users": 3, "items": 3}
    inter = read_tsv(os.path.join(out, "amazon-books", "amazon-books.inter"))
    assert list(inter[0]) == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    by_user = {}
    for row in inter:
        by_user.setdefault(row["user_id:token"], []).append(row["item_id:token"])
    assert by_user == {"u1": ["A", "B", "C"], "u2": ["A", "B", "C"], "u3": ["B", "C", "A"]}
    assert inter[0]["timestamp:float"] == "1600000000" and inter[1]["rating:float"] == "5"
    items = {row["item_id:token"]: row for row in
             read_tsv(os.path.join(out, "amazon-books", "amazon-books.item"))}
    assert sorted(items) == ["A", "B", "C"]
    assert items["A"]["title:token_seq"] == "Dune Novel"
    assert items["A"]["description:token_seq"] == "Desert planet. Spice."
    assert items["A"]["categories:token_seq"] == "Books Science Fiction"
    assert items["C"]["title:token_seq"] == "Ulysses by Joyce"
    assert items["C"]["features:token_seq"] == "Hardcover 700 pages"
    assert items["B"]["description:token_seq"] == ""


def test_k_core_repeats_until_every_user_and_item_has_k_rows():
    rows = [("u1", "a", 1, 1), ("u1", "b", 1, 2), ("u2", "a", 1, 3), ("u2", "b", 1, 4),
            ("u3", "a", 1, 5), ("u3", "c", 1, 6)]
    # item c has one row: dropping it leaves u3 with one row, which then drops u3 too
    assert k_core(rows, 2) == rows[:4]
    assert k_core(rows, 3) == []


def test_malformed_json_line_names_the_file_line_and_format(amazon_files, tmp_path, capsys):
    reviews = write_jsonl(str(tmp_path / "bad.jsonl"), amazon_reviews()[:2], ['{"user_id": "u9",'])
    assert run_amazon(reviews, amazon_files[1], str(tmp_path / "data")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {reviews}, line 3: expected one JSON object per line with the keys "
        "['user_id', 'parent_asin', 'rating', 'timestamp'] (Expecting property name enclosed in "
        "double quotes). Fix: repair or delete that line (or re-download the file).")
    assert not os.path.exists(tmp_path / "data" / "amazon-books")


def test_a_review_without_a_required_key_or_with_a_bad_number_is_malformed(amazon_files, tmp_path):
    no_rating = dict(amazon_reviews()[0])
    del no_rating["rating"]
    reviews = write_jsonl(str(tmp_path / "r.jsonl"), [amazon_reviews()[0], no_rating])
    with pytest.raises(MalformedLineError, match=r"r\.jsonl, line 2: expected one JSON object"):
        prepare.prepare_amazon2023(prepare.build_parser().parse_args(
            ["amazon2023", "--reviews", reviews, "--meta", amazon_files[1], "--out", str(tmp_path)]))
    bad_time = dict(amazon_reviews()[0], timestamp="yesterday")
    reviews = write_jsonl(str(tmp_path / "t.jsonl"), [bad_time])
    with pytest.raises(MalformedLineError, match=r"t\.jsonl, line 1: expected a number in "
                                                 r"'timestamp', found 'yesterday'"):
        prepare.amazon_interactions(reviews, {"A"})


def write_pixelrec(tmp_path, extra_inter_line=None):
    items = str(tmp_path / "items.csv")
    with open(items, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "view_number", "title", "tag", "description"])
        writer.writerow(["10", "5", "Cat video", "pets", "A cat, jumping\non a sofa"])
        writer.writerow(["11", "7", "Piano", "music", "Chopin"])
        writer.writerow(["12", "1", "Rare", "misc", ""])
    inter = str(tmp_path / "inter.csv")
    with open(inter, "w") as f:
        f.write("item_id,user_id,timestamp\n")
        for user, seq in (("p1", "10 11"), ("p2", "11 10"), ("p3", "10 11 12")):
            for step, item in enumerate(seq.split()):
                f.write(f"{item},{user},{1_500_000_000 + step}\n")
        if extra_inter_line:
            f.write(extra_inter_line + "\n")
    return inter, items


def test_pixelrec_files_hold_the_k_core_and_the_csv_text(tmp_path, capsys):
    inter, items = write_pixelrec(tmp_path)
    out = str(tmp_path / "data")
    assert prepare.main(["pixelrec", "--interactions", inter, "--items", items, "--out", out,
                         "--k_core=2", "--name=px"]) == 0
    report = json.loads(capsys.readouterr().out.split("PREPARE ", 1)[1])
    assert (report["interactions"], report["users"], report["items"]) == (6, 3, 2)
    rows = read_tsv(os.path.join(out, "px", "px.inter"))
    assert [(r["user_id:token"], r["item_id:token"], r["rating:float"]) for r in rows][:2] == [
        ("p1", "10", "1"), ("p1", "11", "1")]
    item_rows = read_tsv(os.path.join(out, "px", "px.item"))
    assert list(item_rows[0]) == ["item_id:token", "title:token_seq", "tag:token_seq",
                                  "description:token_seq"]
    assert item_rows[0]["description:token_seq"] == "A cat, jumping on a sofa"


def test_pixelrec_row_with_wrong_cell_count_is_malformed(tmp_path, capsys):
    inter, items = write_pixelrec(tmp_path, extra_inter_line="10,p4")
    assert prepare.main(["pixelrec", "--interactions", inter, "--items", items,
                         "--out", str(tmp_path / "data")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {inter}, line 9: expected 3 comma-separated cells (item_id, user_id, timestamp), "
        "found 2. Fix: repair or delete that line (or re-download the file).")


def test_pixelrec_header_without_a_column_is_malformed(tmp_path):
    inter, items = write_pixelrec(tmp_path)
    with open(inter, "w") as f:
        f.write("item,user_id,timestamp\n10,p1,1\n")
    with pytest.raises(MalformedLineError, match=r"line 1: expected a header with the columns "
                                                 r"\['item_id', 'user_id', 'timestamp'\] "
                                                 r"\(missing \['item_id'\]"):
        list(prepare.read_csv_rows(inter, prepare.PIXELREC_INTER_COLUMNS))


def test_nothing_left_after_filtering_is_a_clear_error(amazon_files, tmp_path):
    args = prepare.build_parser().parse_args(["amazon2023", "--reviews", amazon_files[0], "--meta",
                                              amazon_files[1], "--out", str(tmp_path), "--k_core=9"])
    with pytest.raises(ConfigError, match="no interaction is left after 9-core filtering of 11 rows"):
        prepare.prepare_amazon2023(args)


@pytest.mark.parametrize("name", ["amazon-books", "pixelrec"])
def test_converted_files_load_with_the_shipped_dataset_properties(name, amazon_files, tmp_path):
    from recbole_hymirec.config import Config
    from recbole_hymirec.data.item_text import read_item_texts
    from recbole_hymirec.utils import create_dataset

    out = str(tmp_path / "data")
    if name == "amazon-books":
        assert run_amazon(*amazon_files, out, "--k_core=2") == 0
    else:
        inter, items = write_pixelrec(tmp_path)
        assert prepare.main(["pixelrec", "--interactions", inter, "--items", items, "--out", out,
                             "--k_core=2"]) == 0
    config = Config(model="SASRec", dataset=name,
                    config_dict={"data_path": out, "show_progress": False})
    dataset = create_dataset(config)
    assert dataset.user_num - 1 == 3 and dataset.inter_num in (9, 6)
    texts = read_item_texts(config["data_path"], name, dataset.field2id_token["item_id"],
                            config["item_text_fields"])
    assert texts[0] == "unknown item" and all(t != "unknown item" for t in texts[1:])
    assert "title: " in texts[1]
