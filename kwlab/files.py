"""Durable file writes: a reader sees the old file or the new one whole, never a torn one, also after a power cut;
a write that fails (a full disk, a read-only folder) is one WriteError line naming the folder and the cause."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from kwlab.errors import WriteError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised in the block into a WriteError naming `path`'s folder, the file and the cause."""
    try:
        yield
    except OSError as error:
        cause = os.strerror(error.errno) if error.errno else str(error)
        full = " (the disk is full)" if error.errno in DISK_FULL else ""
        raise WriteError(f"{path.parent}: cannot write {path.name}: {cause}{full}") from error


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; when the block succeeds its data is flushed to the disk
    (fsync) before it replaces `path`, and the folder's entry after, so a power cut leaves the old file or the new
    one whole."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            yield tmp
            _fsync(tmp)
            os.replace(tmp, path)
            with contextlib.suppress(OSError):  # some file systems cannot sync a folder; the data is safe already
                _fsync(path.parent)
        finally:
            tmp.unlink(missing_ok=True)


NAME_BYTES = 200  # a file or folder name kwlab makes from a user's text stays under this (filesystems allow 255)


def safe_name(text: str) -> str:
    """`text` as a file or folder name of at most NAME_BYTES bytes: as it is when short enough, else its start and
    a hash of the whole (so two long names stay apart)."""
    if len(text.encode()) <= NAME_BYTES:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    return f"{text.encode()[:NAME_BYTES - 13].decode(errors='ignore')}-{digest}"


def write_text(path: Path, text: str) -> None:
    """Replace the file `path` by `text` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
