"""Where a results store lives: a local folder, or any filesystem pyarrow opens by URI (`s3://bucket/prefix`, with
pyarrow's query options for S3-compatible stores such as `?endpoint_override=host:9000&scheme=http`; `gs://`,
`hdfs://`). kwlab.store reads and writes every file through a `Storage`, so the layout is the same everywhere.

Writes are whole-file and atomic: on a local disk through a flushed temporary file renamed over the old one
(kwlab.files), on an object store by one PUT. Reads of a missing or unreadable file give None.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.fs as pafs

from kwlab.errors import KWLabError, WriteError
from kwlab.files import DISK_FULL, atomic_path, writing

# NOTE: object stores need no folder made before a file, and some S3-compatible ones reject the empty marker objects
# that creating one leaves
OBJECT_STORES = ("s3", "gcs")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# NOTE: pyarrow's S3 client probes the EC2 metadata service for credentials first, which takes seconds off EC2
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def cache_root() -> Path:
    """kwlab's folder under the user's cache ($XDG_CACHE_HOME, else ~/.cache): working copies of the trials and
    files of stores at a URI, never the working folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kwlab"


def is_uri(where: str | Path) -> bool:
    """Whether `where` names a filesystem by URI (scheme://...) rather than a local path."""
    return bool(URI.match(str(where)))


@dataclass(frozen=True)
class Entry:
    """A file or folder of a listing: its path relative to the listed folder, modification time (s) and size."""

    path: str
    mtime: float
    size: int
    is_dir: bool


@dataclass(frozen=True)
class Storage:
    """A folder on some filesystem: `fs` (pyarrow), `root` (a path inside it) and `uri`, the name the user gave."""

    fs: pafs.FileSystem
    root: str
    uri: str

    @classmethod
    def of(cls, where: str | Path | Storage) -> Storage:
        """A local folder (a path) or a URI pyarrow opens; a URI it cannot open is one line naming it."""
        if isinstance(where, Storage):
            return where
        text = str(where)
        if not is_uri(text) or text.startswith("file://"):
            path = Path(text.removeprefix("file://")).absolute()
            return cls(pafs.LocalFileSystem(), path.as_posix(), text)
        try:
            fs, root = pafs.FileSystem.from_uri(text)
        except (pa.ArrowException, ValueError, OSError) as error:
            raise KWLabError(f"{text}: cannot open this results location ({_first_line(error)}); give a folder or a "
                             "URI such as s3://bucket/prefix?endpoint_override=host:port&scheme=http") from None
        return cls(fs, root.rstrip("/"), text)

    @property
    def cache(self) -> Path:
        """This location's own folder under the user's cache (for what must live on a local disk, e.g. SQLite)."""
        return cache_root() / "stores" / hashlib.sha1(self.uri.encode()).hexdigest()[:16]

    @property
    def local(self) -> Path | None:
        """The local folder, or None on another filesystem."""
        return Path(self.root) if isinstance(self.fs, pafs.LocalFileSystem) else None

    def __str__(self) -> str:
        return self.uri

    def path(self, *parts: str) -> str:
        """The filesystem path of `parts` under the root."""
        return str(PurePosixPath(self.root, *parts))

    def child(self, *parts: str) -> Storage:
        """The sub-folder `parts`, with a `uri` that opens it again (a URI keeps its query options)."""
        name = "/".join(parts)
        if self.local is not None:
            return Storage(self.fs, self.path(*parts), str(Path(self.uri) / name))
        base, mark, query = self.uri.partition("?")
        return Storage(self.fs, self.path(*parts), f"{base.rstrip('/')}/{name}{mark}{query}")

    def read_bytes(self, name: str) -> bytes | None:
        """A file's bytes, or None when it is absent or cannot be read."""
        if self.local is not None:
            try:
                return (self.local / name).read_bytes()
            except OSError:
                return None
        try:
            with self.fs.open_input_stream(self.path(name)) as stream:
                return stream.read()
        except (OSError, pa.ArrowException):
            return None

    def read_text(self, name: str) -> str | None:
        """A file as UTF-8 text, or None when it is absent, unreadable or not text."""
        data = self.read_bytes(name)
        try:
            return None if data is None else data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace the file `name` by `data` whole (atomically); a failure is one WriteError line."""
        if self.local is not None:
            with atomic_path(self.local / name) as tmp:
                tmp.write_bytes(data)
            return
        try:
            if self.fs.type_name not in OBJECT_STORES:  # HDFS, fsspec's: a file needs its folder
                self.fs.create_dir(self.path(name).rsplit("/", 1)[0], recursive=True)
            with self.fs.open_output_stream(self.path(name)) as stream:
                stream.write(data)
        except (OSError, pa.ArrowException) as error:
            raise WriteError(f"{self.uri}: cannot write {name}: {_first_line(error)}") from error

    def write_text(self, name: str, text: str) -> None:
        """Replace the file `name` by `text` whole."""
        self.write_bytes(name, text.encode("utf-8"))

    def upload(self, source: Path, name: str) -> None:
        """Copy the local file `source` to `name` here (whole)."""
        self.write_bytes(name, source.read_bytes())

    def download(self, name: str, target: Path) -> bool:
        """Copy the file `name` to the local path `target` (atomically); False when it is absent."""
        data = self.read_bytes(name)
        if data is None:
            return False
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        return True

    def exists(self, name: str = "") -> bool:
        """Whether a file or folder `name` exists (the root itself when '')."""
        try:
            return self.fs.get_file_info(self.path(name) if name else self.root).type != pafs.FileType.NotFound
        except (OSError, pa.ArrowException):
            return False

    def is_dir(self, name: str = "") -> bool:
        """Whether `name` is a folder (on an object store: a prefix holding files)."""
        try:
            return self.fs.get_file_info(self.path(name) if name else self.root).type == pafs.FileType.Directory
        except (OSError, pa.ArrowException):
            return False

    def listing(self, name: str = "", recursive: bool = False) -> list[Entry]:
        """The files and folders under `name`, sorted by path (relative to `name`); [] when it is absent."""
        base = self.path(name) if name else self.root
        if self.local is not None:
            return _local_listing(Path(base), recursive)
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=recursive))
        except (OSError, pa.ArrowException):
            return []
        entries = [Entry(info.path[len(base):].lstrip("/"), info.mtime.timestamp() if info.mtime else 0.0,
                         info.size or 0, info.type == pafs.FileType.Directory) for info in infos]
        return sorted(entries, key=lambda entry: entry.path)

    def delete(self, name: str) -> None:
        """Remove the file `name` (nothing when absent)."""
        with contextlib.suppress(FileNotFoundError, pa.ArrowException):
            self.fs.delete_file(self.path(name))

    def delete_tree(self, name: str) -> None:
        """Remove the folder `name` and everything under it (nothing when absent)."""
        with contextlib.suppress(FileNotFoundError, OSError, pa.ArrowException):
            self.fs.delete_dir(self.path(name))

    def make_dir(self, name: str = "") -> None:
        """Create the folder `name` and its parents (on an object store folders need no creating)."""
        if self.local is not None:
            with writing(self.local / (name or ".") / "."):
                (self.local / name).mkdir(parents=True, exist_ok=True)


def _local_listing(base: Path, recursive: bool) -> list[Entry]:
    """A local folder's listing by os.scandir (one stat per entry, no pyarrow round trips)."""
    entries: list[Entry] = []
    stack = [(base, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as found:
                for item in found:
                    try:
                        info = item.stat()
                        directory = item.is_dir()
                    except OSError:  # removed while listed
                        continue
                    path = f"{prefix}{item.name}"
                    entries.append(Entry(path, info.st_mtime, info.st_size, directory))
                    if directory and recursive:
                        stack.append((Path(item.path), f"{path}/"))
        except OSError:
            continue
    return sorted(entries, key=lambda entry: entry.path)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        return f"{os.strerror(error.errno)} (the disk is full)"
    return text.splitlines()[0][:300] if text else type(error).__name__
