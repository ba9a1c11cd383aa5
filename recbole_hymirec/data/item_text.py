"""One readable text per item, from the raw ``.item`` atomic file (RecBole keeps only word
ids of token_seq fields; a content LLM needs the strings)."""
import csv
import logging
import os
import string

from recbole_hymirec.errors import ConfigError

logger = logging.getLogger(__name__)

UNKNOWN_ITEM_TEXT = "unknown item"
# Readable labels for the usual RecBole field names; any other field is labelled by its name.
FIELD_LABELS = {
    "movie_title": "title",
    "title": "title",
    "item_name": "title",
    "name": "title",
    "release_year": "year",
    "year": "year",
    "class": "genres",
    "genre": "genres",
    "genres": "genres",
    "categories": "categories",
    "brand": "brand",
    "description": "description",
}


def _field_name(header_entry):
    """``movie_title:token_seq`` -> ``movie_title``."""
    return header_entry.split(":", 1)[0].strip()


def _format_value(value):
    """Strip, and print integral floats without the ``.0`` pandas/RecBole give them (1995.0)."""
    value = str(value).strip()
    try:
        number = float(value)
    except ValueError:
        return value
    if number.is_integer() and abs(number) < 1e15 and any(c in value for c in ".eE"):
        return str(int(number))
    return value


def _default_text(values, text_fields):
    parts = []
    for field in text_fields:
        value = values.get(field, "")
        if not value:
            continue
        label = FIELD_LABELS.get(field.lower(), field.replace("_", " "))
        end = "" if value.endswith((".", "!", "?")) else "."
        parts.append(f"{label}: {value}{end}")
    return " ".join(parts)


def _check_template(template, text_fields):
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    unknown = sorted(names - set(text_fields))
    if unknown:
        raise ConfigError(
            f"item_text_template uses {unknown}, which are not in item_text_fields "
            f"{list(text_fields)}. "
            "Fix: add them to item_text_fields or remove them from the template."
        )


def read_item_texts(dataset_dir, dataset_name, item_tokens, text_fields, template=None,
                    item_id_field="item_id", field_separator="\t", encoding="utf-8"):
    """One text per entry of ``item_tokens`` built from ``<dataset_dir>/<dataset_name>.item``.

    Args:
        dataset_dir: folder holding the atomic files (RecBole's ``config['data_path']``).
        dataset_name: the dataset name (file stem).
        item_tokens: item id tokens in RecBole's internal order
            (``dataset.field2id_token['item_id']``, index 0 is ``'[PAD]'``).
        text_fields: ``.item`` fields to put in the text, in order (``name`` or ``name:type``).
        template: optional ``str.format`` template over ``text_fields``, e.g.
            ``"{movie_title} ({release_year})"``; default: ``"title: Toy Story. year: 1995. ..."``.

    Returns:
        list of ``len(item_tokens)`` strings; items without a row (and ``[PAD]``) get
        ``"unknown item"``.
    """
    import pandas as pd

    text_fields = [_field_name(f) for f in text_fields]
    if not text_fields:
        raise ConfigError(
            "item_text_fields is empty. Fix: name the .item fields to encode, e.g. [movie_title]."
        )
    path = os.path.join(dataset_dir, f"{dataset_name}.item")
    if not os.path.isfile(path):
        raise ConfigError(
            f"The item text fields {text_fields} need the item file {path}, which does not exist. "
            f"Fix: put {dataset_name}.item (RecBole atomic format) in {dataset_dir}, "
            "or check data_path and dataset."
        )
    # Everything as raw strings: no NaN, no quote handling (titles may contain quotes).
    frame = pd.read_csv(path, sep=field_separator, dtype=str, keep_default_na=False,
                        quoting=csv.QUOTE_NONE, encoding=encoding, encoding_errors="replace")
    frame = frame.fillna("")  # short rows leave NaN even with keep_default_na=False
    frame.columns = [_field_name(c) for c in frame.columns]
    missing = [f for f in [item_id_field] + text_fields if f not in frame.columns]
    if missing:
        raise ConfigError(
            f"Field(s) {missing} are not in {path}; available fields: {list(frame.columns)}. "
            "Fix: set item_text_fields to some of the available fields."
        )
    if template is not None:
        _check_template(template, text_fields)

    texts = {}
    for row in frame[[item_id_field] + text_fields].itertuples(index=False, name=None):
        token = str(row[0]).strip()
        if token in texts:  # RecBole keeps the first row of a duplicated id as well
            continue
        values = {f: _format_value(v) for f, v in zip(text_fields, row[1:])}
        if template is not None:
            text = template.format(**values)
        else:
            text = _default_text(values, text_fields)
        texts[token] = text.strip() or UNKNOWN_ITEM_TEXT
    return [texts.get(str(token), UNKNOWN_ITEM_TEXT) for token in item_tokens]


# ----------------------------------------------------------------------------- encoder


def item_texts(config, dataset):
    """One text per RecBole item id, read from the raw ``.item`` file."""
    if not config["item_text_fields"]:
        raise ConfigError(
            f"item_text_fields is not set for dataset '{config['dataset']}'. Fix: name the .item "
            "fields that describe an item, e.g. --item_text_fields=\"['movie_title']\"."
        )
    tokens = list(dataset.field2id_token[dataset.iid_field])
    texts = read_item_texts(config["data_path"], config["dataset"], tokens,
                            config["item_text_fields"], template=config["item_text_template"],
                            item_id_field=dataset.iid_field,
                            field_separator=config["field_separator"])
    _check_texts(config, texts)
    return tokens, texts


def _check_texts(config, texts):
    """All items without text cannot be embedded; a few are logged and get a placeholder."""
    empty = sum(t == UNKNOWN_ITEM_TEXT for t in texts[1:])
    if empty == len(texts) - 1:
        raise ConfigError(
            f"Every item of '{config['dataset']}' has an empty text in the fields "
            f"{list(config['item_text_fields'])}. Fix: point item_text_fields to .item fields "
            "that hold titles or descriptions.")
    if empty:
        logger.warning("%d of %d items have no text in %s: they are embedded as '%s'",
                       empty, len(texts) - 1, list(config["item_text_fields"]), UNKNOWN_ITEM_TEXT)
