"""CIFAR-10/100 from the python-pickle batches torchvision writes (read here, never downloaded)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from kwlab.data.augment import TensorDefaults
from kwlab.data.holdout import refuse_test_size
from kwlab.data.registry import DataSpec, Splits, register
from kwlab.data.roots import DEFAULT_BASE, missing_error, resolve_root
from kwlab.data.tensors import build_splits
from kwlab.errors import KWLabError

# name -> (folder under root, train files, test files, label key, classes)
CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}
CIFAR_VAL_SIZE = 5000  # held out of the 50k training images, the customary CIFAR validation split
CIFAR_AUGMENT = TensorDefaults(crop_padding=4, flip=True)  # the standard CIFAR recipe (He et al. 2016)


def _unpickle(path: Path, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="latin1")  # trusted local files, as torchvision does
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt/foreign file
        raise KWLabError(f"{path}: not a readable CIFAR pickle batch ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise KWLabError(f"{path}: expected a pickled dict with keys 'data' and {label_key!r}")
    try:
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    except (ValueError, TypeError) as err:
        raise KWLabError(f"{path}: 'data' must be N x 3072 uint8 and labels N integers ({err})") from None
    if len(labels) != len(images) or (len(labels) and (labels.min() < 0 or labels.max() >= classes)):
        raise KWLabError(f"{path}: expected {len(images)} labels in 0..{classes - 1}")
    return images, labels


def _load_cifar(name: str, spec: DataSpec) -> Splits:
    folder, train_files, test_files, label_key, classes = CIFAR[name]
    refuse_test_size(spec, name, f"the official {test_files[0]} file")
    root, origin = resolve_root(spec, DEFAULT_BASE)
    # accept root = the parent (torchvision's root) or the batches folder itself
    candidates = [root / folder, root]
    base = next((c for c in candidates if all((c / f).is_file() for f in train_files + test_files)), None)
    if base is None:
        raise missing_error(
            name,
            f"{folder}/{{{','.join(train_files + test_files)}}}",
            root,
            origin,
            f"set data.root / KWLAB_DATA to the folder holding {folder}/ (torchvision's CIFAR layout)",
        )
    parts = [_unpickle(base / f, label_key, classes) for f in train_files]
    pool = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = _unpickle(base / test_files[0], label_key, classes)
    return build_splits(name, pool, test, classes, spec, val_default=CIFAR_VAL_SIZE, augment=CIFAR_AUGMENT)


@register("cifar10")
def load_cifar10(spec: DataSpec, seed: int) -> Splits:
    """CIFAR-10, 32x32x3, 10 classes: 45000 train / 5000 val from data_batch_1..5, test = the 10k test_batch."""
    return _load_cifar("cifar10", spec)


@register("cifar100")
def load_cifar100(spec: DataSpec, seed: int) -> Splits:
    """CIFAR-100 (fine labels), 32x32x3, 100 classes: 45000 train / 5000 val from train, test = the 10k test."""
    return _load_cifar("cifar100", spec)
