"""Files written atomically: a reader finds the old file or the whole new one, never a part.

The content goes to a temp file in the target's own folder (same file system, so the rename
is atomic), is flushed and fsynced (a crash right after the rename cannot leave an empty
file), and ``os.replace`` puts it in place. A failure before the rename removes the temp file
and leaves an earlier file at the path untouched.
"""
import os
import shutil
import tempfile
from contextlib import contextmanager


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_readable(path, mode):
    """mkstemp/mkdtemp create 0600/0700 entries: give them the usual permissions instead."""
    os.chmod(path, mode & ~_umask())


def _temp_name(path):
    return os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}."


@contextmanager
def atomic_open(path):
    """A binary file object whose content replaces ``path`` when the block ends without error."""
    folder, prefix = _temp_name(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _make_readable(tmp, 0o666)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path, data):
    """Write ``data`` (str, written as UTF-8, or bytes) to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def _fsync_files(folder):
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())


@contextmanager
def atomic_folder(target):
    """A temp folder beside ``target`` that becomes ``target`` when the block ends without
    error. ``os.replace`` refuses an existing non-empty ``target`` (OSError): the caller
    decides whether another process's complete copy will do."""
    folder, prefix = _temp_name(target)
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        yield tmp
        _fsync_files(tmp)
        _make_readable(tmp, 0o777)
        os.replace(tmp, target)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
