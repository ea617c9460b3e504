"""IDX files (the MNIST format, raw or gzip) and the `fashion_mnist` loader built on them."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from kwlab.data.augment import TensorDefaults
from kwlab.data.holdout import refuse_test_size
from kwlab.data.registry import DataSpec, Splits, register
from kwlab.data.roots import missing_error, resolve_root
from kwlab.data.tensors import build_splits
from kwlab.errors import KWLabError

# IDX type byte -> big-endian numpy dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
FASHION_FILES = {  # role -> base name; each may be gzip'd (.gz) or raw
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_SUBDIRS = (".", "FashionMNIST/raw", "fashion-mnist")  # flat / torchvision / Debian-like layouts
FASHION_VAL_SIZE = 5000  # held out of the 60k training images (the size of CIFAR's customary val split)
# a mirrored shirt, bag or shoe is still one (flip); items fill the 28x28 frame more tightly than CIFAR objects
# fill 32x32, so shifts stay at 2 pixels (7%) rather than 4 to keep sleeves, soles and straps in view
FASHION_AUGMENT = TensorDefaults(crop_padding=2, flip=True)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip detected by its magic bytes) into an array of the shape its header declares."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise KWLabError(f"{path}: cannot read it as a (gzip'd) IDX file: {err}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        magic = data[:4].hex() or "(empty)"
        raise KWLabError(f"{path}: bad IDX magic 0x{magic}; expected 0x0000TTNN (TT a type code such as 08, NN dims)")
    ndim, dtype = data[3], np.dtype(_IDX_TYPES[data[2]])
    header = 4 + 4 * ndim
    if len(data) < header:
        raise KWLabError(f"{path}: IDX header declares {ndim} dims but the file ends after {len(data)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise KWLabError(f"{path}: IDX header declares shape {dims} ({expected} bytes) but holds {len(data) - header}")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def _find(folder: Path, base: str) -> Path | None:
    stem, _, rest = base.partition("-idx")
    for name in (base + ".gz", base, f"{stem}.idx{rest}.gz", f"{stem}.idx{rest}"):  # also MNIST's '.idx' spelling
        if (folder / name).is_file():
            return folder / name
    return None


def _fashion_files(root: Path, origin: str) -> dict[str, Path]:
    for sub in FASHION_SUBDIRS:
        found = {role: _find(root / sub, base) for role, base in FASHION_FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    expected = ", ".join(f"{b}[.gz]" for b in FASHION_FILES.values())
    raise missing_error(
        "fashion_mnist",
        expected,
        root,
        origin,
        "install Debian's dataset-fashion-mnist, or set data.root / KWLAB_DATA to a folder holding the IDX files"
        " (also searched its FashionMNIST/raw and fashion-mnist subfolders)",
    )


def _images_labels(images_path: Path, labels_path: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise KWLabError(f"{images_path}: expected uint8 images N x H x W, got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise KWLabError(f"{labels_path}: expected {len(images)} labels (one per image), got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise KWLabError(f"{labels_path}: labels must lie in 0..{classes - 1}, found {labels.min()}..{labels.max()}")
    return images[:, None], labels.astype(np.int64)


@register("fashion_mnist")
def load_fashion_mnist(spec: DataSpec, seed: int) -> Splits:
    """Fashion-MNIST from the IDX files, 28x28x1, 10 classes: 55000 train / 5000 val / the official 10k test."""
    refuse_test_size(spec, "fashion_mnist", "the official t10k set")
    root, origin = resolve_root(spec, FASHION_ROOT)
    files = _fashion_files(root, origin)
    pool = _images_labels(files["train_images"], files["train_labels"], 10)
    test = _images_labels(files["test_images"], files["test_labels"], 10)
    return build_splits("fashion_mnist", pool, test, 10, spec, val_default=FASHION_VAL_SIZE, augment=FASHION_AUGMENT)
