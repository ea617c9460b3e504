"""A trial of a results store at a URI (an object store: no node shares a folder with it), trained in a local folder
under the user's cache: `Staged.pull` brings the trial's files from the store before it starts (so a trial that
resumes on another node finds its checkpoint there), `Staged.push` copies what changed back, after every epoch and
when it ends (`synced`). The driver's own files of the trial (sweep.json, error.json, stopped.json, mlflow.json) stay
the store's."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kwlab import store
from kwlab.storage import cache_root

DRIVER_FILES = (store.ERROR, store.STOPPED, store.MLFLOW_RUN)  # written by the runner, never copied back


@dataclass
class Staged:
    """A remote trial directory and its local working copy; `sent` remembers what the store already has."""

    remote: store.TrialDir
    local: store.TrialDir
    sent: dict[str, tuple[int, int]] = field(default_factory=dict)  # file -> (size, mtime_ns) the store holds

    @classmethod
    def of(cls, uri: str) -> Staged:
        """The working copy of the trial at `uri`, emptied (a copy left by an earlier run on this node may be
        older than the store's)."""
        folder = cache_root() / "trials" / hashlib.sha1(uri.encode()).hexdigest()[:16]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return cls(store.TrialDir(uri), store.TrialDir(folder))

    def pull(self) -> None:
        """Copy every file of the remote trial (but the driver's own) into the working copy."""
        for entry in self.remote.storage.listing(recursive=True):
            if entry.is_dir or entry.path in DRIVER_FILES:
                continue
            target = self.local.path / entry.path
            if self.remote.storage.download(entry.path, target):
                self.sent[entry.path] = _stamp(target)

    def push(self) -> None:
        """Copy the files of the working copy that changed since the store last got them."""
        for path in sorted(p for p in self.local.path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            name = path.relative_to(self.local.path).as_posix()
            stamp = _stamp(path)
            if self.sent.get(name) != stamp:
                self.remote.storage.upload(path, name)
                self.sent[name] = stamp
        for name in [n for n in self.sent if not (self.local.path / n).exists()]:  # removed here (checkpoint.pt)
            self.remote.storage.delete(name)
            del self.sent[name]

    def synced(self, epochs: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The trial's epochs, the store brought up to date after each one and when the trial ends or fails."""
        try:
            for metrics in epochs:
                self.push()
                yield metrics
        finally:
            self.push()

    def clean(self) -> None:
        """Remove the working copy (the store has everything)."""
        shutil.rmtree(self.local.path, ignore_errors=True)


def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns
