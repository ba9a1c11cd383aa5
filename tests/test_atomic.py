"""Atomic writes: the old file or the whole new one, never a part, and no temp file left."""
import os

import pytest

from recbole_hymirec import atomic


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_a_failure_mid_write_leaves_the_old_file_intact(out):
    path = out / "page.md"
    atomic.write_atomic(path, "old page\n")
    with pytest.raises(RuntimeError, match="disk gone"):
        with atomic.atomic_open(path) as f:
            f.write(b"half of the new pa")
            raise RuntimeError("disk gone")
    assert path.read_text() == "old page\n"
    assert os.listdir(out) == ["page.md"]


def test_write_round_trips_text_and_bytes_and_is_synced(out, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    text, binary = out / "sub" / "a.csv", out / "b.png"
    atomic.write_atomic(text, "naïve,1\n")
    atomic.write_atomic(binary, b"\x89PNG\x00")
    assert text.read_bytes() == "naïve,1\n".encode("utf-8")
    assert binary.read_bytes() == b"\x89PNG\x00"
    assert len(synced) == 2
    assert os.stat(text).st_mode & 0o004  # readable by others, unlike mkstemp's 0600


def test_a_folder_appears_whole_or_not_at_all(out):
    target = out / "model"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_folder(target) as tmp:
            (out / tmp / "config.json").write_text("{}")
            raise KeyboardInterrupt
    assert os.listdir(out) == []
    with atomic.atomic_folder(target) as tmp:
        (out / tmp / "config.json").write_text("{}")
    assert os.listdir(out) == ["model"] and (target / "config.json").read_text() == "{}"


def test_a_folder_never_replaces_a_complete_one(out):
    target = out / "model"
    target.mkdir()
    (target / "weights").write_text("theirs")
    with pytest.raises(OSError):
        with atomic.atomic_folder(target) as tmp:
            (out / tmp / "weights").write_text("ours")
    assert (target / "weights").read_text() == "theirs" and os.listdir(out) == ["model"]
