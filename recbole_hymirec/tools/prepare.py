"""Convert public raw recommendation data into RecBole atomic files with item text.

    python -m recbole_hymirec.tools.prepare amazon2023 --reviews Books.jsonl.gz \\
        --meta meta_Books.jsonl.gz --out DATA_PATH [--name amazon-books] [--k_core 5]
    python -m recbole_hymirec.tools.prepare pixelrec --interactions Pixel200K.csv \\
        --items Pixel200K_items.csv --out DATA_PATH [--name pixelrec] [--k_core 5]

Formats read (the files are downloaded by the user; plain or ``.gz``):

* Amazon Reviews 2023: a reviews jsonl (``user_id``, ``parent_asin``, ``rating``, ``timestamp``
  in milliseconds) and the item metadata jsonl (``parent_asin``, ``title``, ``description``,
  ``features``, ``categories``). Items are the ``parent_asin``; reviews of an item without
  metadata are dropped.
* PixelRec: an interaction csv (``item_id``, ``user_id``, ``timestamp``) and an item csv
  (``item_id``, ``title``, ``tag``, ``description``).

Writes ``DATA_PATH/NAME/NAME.inter`` and ``NAME.item`` after k-core filtering (every user and
item keeps at least k interactions), then prints one line ``PREPARE {json}`` with the counts.
Run with ``-d NAME --data_path=DATA_PATH``; ``properties/dataset/NAME.yaml`` names the text
fields (copy ``amazon-books.yaml`` for another Amazon category). A malformed line stops the
conversion with its file, line number and what was expected.
"""
import argparse
import csv
import gzip
import json
import os
import re
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager

from tqdm import tqdm

from recbole_hymirec.cli import run_report_command
from recbole_hymirec.errors import ConfigError, DatasetNotFoundError

INTER_HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
# Longest text kept per field: the encoder reads max_text_len tokens, far fewer characters.
MAX_FIELD_CHARS = 2000
WHITESPACE = re.compile(r"\s+")


class MalformedLineError(ConfigError):
    """A line of a raw file that does not follow its format."""


def malformed(path, line_number, expected):
    return MalformedLineError(f"{path}, line {line_number}: expected {expected}. Fix: repair or "
                              "delete that line (or re-download the file).")


# ----------------------------------------------------------------------------- reading

def open_text(path):
    """A raw file for reading as text, gunzipped when its name ends in ``.gz``."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"raw file '{path}' does not exist. Fix: download it and pass "
                                   "its path.")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_jsonl(path, required):
    """``(line number, record)`` of every non-empty line of a jsonl file; each must be a JSON
    object holding the ``required`` keys."""
    expected = f"one JSON object per line with the keys {list(required)}"
    with open_text(path) as f:
        for number, line in enumerate(tqdm(f, desc=os.path.basename(path), unit=" lines"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise malformed(path, number, f"{expected} ({err.msg})") from err
            if not isinstance(record, dict) or any(key not in record for key in required):
                raise malformed(path, number, expected)
            yield number, record


def read_csv_rows(path, required):
    """``(line number, row dict)`` of a csv file with a header holding the ``required`` columns;
    every row must have as many cells as the header."""
    with open_text(path) as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise malformed(path, 1, f"a header with the columns {list(required)} "
                            f"(missing {missing}; found {header})")
        for row in tqdm(reader, desc=os.path.basename(path), unit=" lines"):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise malformed(path, reader.line_num, f"{len(header)} comma-separated cells "
                                f"({', '.join(header)}), found {len(row)}")
            yield reader.line_num, dict(zip(header, row))


def number(value, path, line_number, field):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise malformed(path, line_number, f"a number in '{field}', found {value!r}") from None


def identifier(value):
    """A user or item id as one token (RecBole's atomic files split on tabs)."""
    return WHITESPACE.sub("_", str(value).strip())


def clean_text(value):
    """One line of text from a string or a list of strings (tabs and newlines become spaces)."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(part) for part in value if part)
    text = WHITESPACE.sub(" ", str(value or "")).strip()
    return text[:MAX_FIELD_CHARS]


# ----------------------------------------------------------------------------- the two formats

AMAZON_REVIEW_KEYS = ("user_id", "parent_asin", "rating", "timestamp")
AMAZON_ITEM_FIELDS = ("title", "categories", "features", "description")
PIXELREC_INTER_COLUMNS = ("item_id", "user_id", "timestamp")
PIXELREC_ITEM_FIELDS = ("title", "tag", "description")


def amazon_items(meta_path):
    """parent_asin -> {field: text} of an Amazon Reviews 2023 metadata file."""
    items = {}
    for _, record in read_jsonl(meta_path, ("parent_asin", "title")):
        items[identifier(record["parent_asin"])] = {field: clean_text(record.get(field))
                                             for field in AMAZON_ITEM_FIELDS}
    return items


def amazon_interactions(reviews_path, known_items):
    """``(user, item, rating, timestamp in seconds)`` of the reviews of ``known_items``."""
    def rating_and_seconds(line_number, record):
        rating = number(record["rating"], reviews_path, line_number, "rating")
        millis = number(record["timestamp"], reviews_path, line_number, "timestamp")
        return rating, millis / 1000.0

    return interactions_of_known_items(read_jsonl(reviews_path, AMAZON_REVIEW_KEYS),
                                       "parent_asin", known_items, rating_and_seconds)


def pixelrec_items(items_path):
    """item_id -> {field: text} of a PixelRec item csv."""
    rows = read_csv_rows(items_path, ("item_id",) + PIXELREC_ITEM_FIELDS)
    return {identifier(row["item_id"]): {field: clean_text(row[field]) for field in PIXELREC_ITEM_FIELDS}
            for _, row in rows}


def pixelrec_interactions(inter_path, known_items):
    """``(user, item, 1.0, timestamp)`` of a PixelRec interaction csv (implicit feedback)."""
    def implicit_rating_and_time(line_number, row):
        return 1.0, number(row["timestamp"], inter_path, line_number, "timestamp")

    return interactions_of_known_items(read_csv_rows(inter_path, PIXELREC_INTER_COLUMNS),
                                       "item_id", known_items, implicit_rating_and_time)


def interactions_of_known_items(records, item_key, known_items, rating_and_time):
    """``(user, item, rating, timestamp)`` of every ``(line_number, record)`` whose item
    (``record[item_key]``) is in ``known_items``; ``rating_and_time(line_number, record)``
    reads the last two, so a malformed value is reported only for a kept row."""
    rows = []
    for line_number, record in records:
        item = identifier(record[item_key])
        if item in known_items:
            rows.append((identifier(record["user_id"]), item, *rating_and_time(line_number, record)))
    return rows


# ----------------------------------------------------------------------------- filtering

def k_core(rows, k):
    """The rows left when every user and every item has at least ``k`` rows (repeated until
    removing sparse items leaves no user below ``k``, and the other way round)."""
    while True:
        users = Counter(row[0] for row in rows)
        items = Counter(row[1] for row in rows)
        kept = [row for row in rows if users[row[0]] >= k and items[row[1]] >= k]
        if len(kept) == len(rows):
            return kept
        rows = kept


def drop_repeats(rows):
    """One row per (user, item, timestamp): a review posted twice counts once."""
    seen, kept = set(), []
    for row in rows:
        key = (row[0], row[1], row[3])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


# ----------------------------------------------------------------------------- writing

@contextmanager
def atomic_text_file(path):
    """A text file open for writing on a temp file that replaces ``path`` only when complete."""
    fd, tmp = tempfile.mkstemp(prefix=".prepare-", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def tsv_line(cells):
    return "\t".join(cells) + "\n"


def plain_number(value):
    """``1700000000.0`` -> ``1700000000``, ``1.5`` -> ``1.5`` (milliseconds kept)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def write_atomic_files(folder, name, rows, items, text_fields):
    """``folder/name.inter`` (rows sorted by user, then time) and ``folder/name.item`` (the
    items that have rows, their text fields as token_seq)."""
    os.makedirs(folder, exist_ok=True)
    with atomic_text_file(os.path.join(folder, f"{name}.inter")) as f:
        f.write(tsv_line(INTER_HEADER))
        for user, item, rating, timestamp in sorted(rows, key=lambda row: (row[0], row[3])):
            f.write(tsv_line((user, item, plain_number(rating), plain_number(timestamp))))
    with atomic_text_file(os.path.join(folder, f"{name}.item")) as f:
        f.write(tsv_line(("item_id:token",) + tuple(f"{field}:token_seq" for field in text_fields)))
        for item in sorted({row[1] for row in rows}):
            f.write(tsv_line((item,) + tuple(items[item][field] for field in text_fields)))


def convert(rows, items, text_fields, out, name, k):
    """k-core ``rows`` and write the atomic files; returns the counts."""
    if k < 1:
        raise ConfigError(f"--k_core={k} must be at least 1. Fix: pass --k_core=5 (the usual) or 1 "
                          "(no filtering).")
    raw = len(rows)
    rows = k_core(drop_repeats(rows), k)
    if not rows:
        raise ConfigError(f"no interaction is left after {k}-core filtering of {raw} rows. Fix: "
                          "pass a smaller --k_core or a larger file.")
    folder = os.path.join(out, name)
    write_atomic_files(folder, name, rows, items, text_fields)
    return {"folder": folder, "raw_interactions": raw, "interactions": len(rows), "k_core": k,
            "users": len({row[0] for row in rows}), "items": len({row[1] for row in rows})}


def prepare_amazon2023(args):
    items = amazon_items(args.meta)
    rows = amazon_interactions(args.reviews, items)
    return convert(rows, items, AMAZON_ITEM_FIELDS, args.out, args.name or "amazon-books", args.k_core)


def prepare_pixelrec(args):
    items = pixelrec_items(args.items)
    rows = pixelrec_interactions(args.interactions, items)
    return convert(rows, items, PIXELREC_ITEM_FIELDS, args.out, args.name or "pixelrec", args.k_core)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    formats = parser.add_subparsers(dest="format", required=True)
    amazon = formats.add_parser("amazon2023", help="Amazon Reviews 2023 (reviews + metadata jsonl)")
    amazon.add_argument("--reviews", required=True, help="reviews jsonl(.gz) of one category")
    amazon.add_argument("--meta", required=True, help="item metadata jsonl(.gz) of that category")
    amazon.set_defaults(prepare=prepare_amazon2023)
    pixelrec = formats.add_parser("pixelrec", help="PixelRec (interaction csv + item text csv)")
    pixelrec.add_argument("--interactions", required=True, help="csv: item_id,user_id,timestamp")
    pixelrec.add_argument("--items", required=True, help="csv with item_id,title,tag,description")
    pixelrec.set_defaults(prepare=prepare_pixelrec)
    for sub in (amazon, pixelrec):
        sub.add_argument("--out", required=True, help="data_path: NAME/ is written inside it")
        sub.add_argument("--name", default=None,
                         help="dataset name (default: amazon-books / pixelrec)")
        sub.add_argument("--k_core", type=int, default=5,
                         help="minimum interactions per user and per item (default 5)")
    return parser


def main(argv=None):
    return run_report_command(build_parser(), argv, "PREPARE",
                              lambda args, _: args.prepare(args), overrides=False)


if __name__ == "__main__":
    sys.exit(main())
