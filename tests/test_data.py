"""Tests for kwlab.data: every loader on small files written here, plus the real Debian Fashion-MNIST if present."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from kwlab.data import DataSpec, Splits, available, load, register
from kwlab.data import registry
from kwlab.errors import KWLabError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KWLAB_DATA", raising=False)


def labels_of(dataset) -> np.ndarray:
    return np.array([dataset[i][1] for i in range(len(dataset))])


def stack(dataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


# ---------------------------------------------------------------- digits


def test_available_lists_every_builtin() -> None:
    assert set(available()) >= {"digits", "fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic"}
    assert available() == sorted(available())


def test_digits_shapes_and_split_sizes() -> None:
    s = load(DataSpec())
    assert isinstance(s, Splits) and s.name == "digits"
    assert (s.num_classes, s.in_chans, s.image_size) == (10, 1, 8)
    assert len(s.train) + len(s.val) == 1797 and len(s.val) == 360  # ceil(0.2 * 1797)
    image, label = s.train[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < 10


def test_digits_split_is_stratified() -> None:
    s = load(DataSpec(val_size=0.25))
    train, val = Counter(labels_of(s.train)), Counter(labels_of(s.val))
    for c in range(10):
        total = train[c] + val[c]
        assert abs(val[c] - 0.25 * total) <= 1, (c, val[c], total)


def test_digits_split_deterministic_and_seeded() -> None:
    a, b, c = load(DataSpec(), seed=3), load(DataSpec(), seed=3), load(DataSpec(), seed=4)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0]) and torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])


def test_digits_normalised_with_train_statistics() -> None:
    s = load(DataSpec())
    x = s.train.tensors[0]
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    assert len(s.mean) == 1 and 0.2 < s.mean[0] < 0.4 and 0.3 < s.std[0] < 0.45  # pixels scaled by 1/16 first
    assert abs(float(s.val.tensors[0].mean())) < 0.1  # val uses the train constants: close, not exact


def test_digits_train_size_val_count_and_resize() -> None:
    s = load(DataSpec(train_size=500, val_size=100, image_size=16), seed=1)
    assert (len(s.train), len(s.val), s.image_size) == (500, 100, 16)
    assert s.train[0][0].shape == (1, 16, 16)
    counts = Counter(labels_of(s.train))
    assert len(counts) == 10 and max(counts.values()) - min(counts.values()) <= 3  # stratified subset


def test_train_size_too_large_is_clear() -> None:
    with pytest.raises(KWLabError, match=r"data\.train_size: 5000 exceeds the 1437"):
        load(DataSpec(train_size=5000))


# ---------------------------------------------------------------- spec validation and registry


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(KWLabError, match=r"data\.name: 'mnist3d' is not one of .*'digits'"):
        DataSpec(name="mnist3d")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"train_size": 0}, "train_size"),
        ({"train_size": True}, "train_size"),
        ({"val_size": 1.5}, "val_size"),
        ({"val_size": 0}, "val_size"),
        ({"image_size": -3}, "image_size"),
        ({"shape": (3, 32, 16)}, "shape"),
        ({"shape": (3, 32)}, "shape"),
        ({"num_classes": 1}, "num_classes"),
        ({"length": 0}, "length"),
        ({"root": ""}, "root"),
        ({"root": 5}, "root"),
    ],
)
def test_spec_rejects_bad_fields(kwargs: dict, field: str) -> None:
    with pytest.raises(KWLabError, match=rf"^data\.{field}: "):
        DataSpec(**kwargs)


def test_spec_normalises_and_round_trips(tmp_path: Path) -> None:
    spec = DataSpec(name="synthetic", root=tmp_path, shape=[1, 4, 4])  # type: ignore[arg-type]
    assert spec.root == str(tmp_path) and spec.shape == (1, 4, 4)
    assert DataSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(KWLabError, match=r"^data\.nmae: unknown key; allowed: name, root"):
        DataSpec.from_dict({"nmae": "digits"})


def test_register_refuses_to_overwrite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry.DATASETS, "_entries", dict(registry.DATASETS._entries))
    original = registry.DATASETS.get("digits")
    with pytest.warns(UserWarning, match="already registered"):
        register("digits")(lambda spec, seed: None)
    assert registry.DATASETS.get("digits") is original

    @register("tiny")
    def tiny(spec: DataSpec, seed: int) -> Splits:
        return load(DataSpec(name="synthetic", length=8, shape=(1, 2, 2)), seed)

    assert "tiny" in available() and load(DataSpec(name="tiny")).num_classes == 10


def test_bad_seed_is_clear() -> None:
    with pytest.raises(KWLabError, match="seed: expected an integer"):
        load(DataSpec(), seed="1")  # type: ignore[arg-type]


# ---------------------------------------------------------------- synthetic


def test_synthetic_deterministic_and_learnable() -> None:
    spec = DataSpec(name="synthetic", shape=(1, 8, 8), num_classes=4, length=200)
    a, b, c = load(spec, seed=0), load(spec, seed=0), load(spec, seed=1)
    assert (len(a.train), len(a.val), a.num_classes, a.in_chans, a.image_size) == (200, 50, 4, 1, 8)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.val.tensors[1], b.val.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    x, y = a.train.tensors
    assert set(y.tolist()) == {0, 1, 2, 3}
    centroids = torch.stack([x[y == k].mean(0).flatten() for k in range(4)])
    xv, yv = a.val.tensors
    predicted = torch.cdist(xv.flatten(1), centroids).argmin(1)
    assert (predicted == yv).float().mean() > 0.9  # label-dependent means: a nearest-centroid model learns it


# ---------------------------------------------------------------- fashion_mnist (IDX)


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)


def write_fashion(folder: Path, n_train: int = 50, n_test: int = 20, gz: bool = True) -> None:
    """Tiny IDX set: image i is filled with 20 * label so the image/label pairing can be checked."""
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = np.broadcast_to((labels * 20)[:, None, None], (n, 28, 28))
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)


def pixels_match_labels(s: Splits) -> bool:
    """Undo the normalisation and check every image still carries 20 * its label."""
    for ds in (s.train, s.val):
        x, y = ds.tensors
        raw = (x[:, 0, 0, 0] * s.std[0] + s.mean[0]) * 255
        if not torch.allclose(raw, (y * 20).float(), atol=1e-2):
            return False
    return True


def test_fashion_mnist_from_small_idx_files(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    s = load(DataSpec(name="fashion_mnist", root=str(tmp_path)))
    assert (len(s.train), len(s.val), s.num_classes, s.in_chans, s.image_size) == (50, 20, 10, 1, 28)
    assert s.train[0][0].shape == (1, 28, 28) and pixels_match_labels(s)
    assert abs(float(s.train.tensors[0].mean())) < 1e-4


def test_fashion_mnist_train_size_subset_is_stratified_and_seeded(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    spec = DataSpec(name="fashion_mnist", root=str(tmp_path), train_size=20)
    a, b, c = load(spec, seed=0), load(spec, seed=0), load(spec, seed=7)
    assert len(a.train) == 20 and len(a.val) == 20  # val stays the whole test split
    assert Counter(labels_of(a.train)) == {k: 2 for k in range(10)}
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and pixels_match_labels(a)
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0]) or not torch.equal(
        a.train.tensors[1], c.train.tensors[1]
    )


@pytest.mark.parametrize("layout", ["raw", "torchvision", "env"])
def test_fashion_mnist_other_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    if layout == "raw":  # uncompressed files
        write_fashion(tmp_path, gz=False)
        spec = DataSpec(name="fashion_mnist", root=str(tmp_path))
    elif layout == "torchvision":  # root/FashionMNIST/raw
        write_fashion(tmp_path / "FashionMNIST" / "raw")
        spec = DataSpec(name="fashion_mnist", root=str(tmp_path))
    else:  # $KWLAB_DATA replaces the default root
        write_fashion(tmp_path)
        monkeypatch.setenv("KWLAB_DATA", str(tmp_path))
        spec = DataSpec(name="fashion_mnist")
    assert len(load(spec).train) == 50


@pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="real Fashion-MNIST absent: apt-get install dataset-fashion-mnist to run this",
)
def test_fashion_mnist_real_debian_files() -> None:
    s = load(DataSpec(name="fashion_mnist", train_size=1000), seed=0)
    assert (len(s.train), len(s.val), s.num_classes, s.in_chans, s.image_size) == (1000, 10000, 10, 1, 28)
    assert Counter(labels_of(s.train)) == {k: 100 for k in range(10)}  # 6000 per class -> exactly 100 each
    assert Counter(s.val.tensors[1].tolist()) == {k: 1000 for k in range(10)}
    assert abs(s.mean[0] - 0.286) < 0.01 and abs(s.std[0] - 0.353) < 0.01


def test_missing_fashion_root_names_path_and_remedy(tmp_path: Path) -> None:
    where = tmp_path / "nowhere"
    with pytest.raises(KWLabError) as info:
        load(DataSpec(name="fashion_mnist", root=str(where)))
    msg = str(info.value)
    assert "\n" not in msg and str(where) in msg
    assert "train-images-idx3-ubyte" in msg and "dataset-fashion-mnist" in msg and "KWLAB_DATA" in msg


def test_missing_default_root_names_env_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KWLAB_DATA", str(tmp_path))
    with pytest.raises(KWLabError, match=rf"under {tmp_path} \(root from KWLAB_DATA\)"):
        load(DataSpec(name="cifar10"))


def test_corrupt_idx_names_the_file(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x12\x34\x56\x78" + bytes(100)))
    with pytest.raises(KWLabError, match=r"train-images-idx3-ubyte\.gz: bad IDX magic 0x12345678"):
        load(DataSpec(name="fashion_mnist", root=str(tmp_path)))


def test_truncated_idx_and_broken_gzip_name_the_file(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-3]))
    with pytest.raises(KWLabError, match=r"t10k-labels-idx1-ubyte\.gz: IDX header declares shape \(20,\)"):
        load(DataSpec(name="fashion_mnist", root=str(tmp_path)))
    labels.write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(KWLabError, match=r"t10k-labels-idx1-ubyte\.gz: cannot read"):
        load(DataSpec(name="fashion_mnist", root=str(tmp_path)))


# ---------------------------------------------------------------- cifar10 / cifar100


def write_cifar(root: Path, name: str) -> None:
    """Tiny torchvision-layout pickles; every image is filled with its label (+1) so pairing can be checked."""
    folder, files, key = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels"),
        "cifar100": ("cifar-100-python", ["train", "test"], "fine_labels"),
    }[name]
    (root / folder).mkdir(parents=True)
    for i, file in enumerate(files):
        n = 10 if name == "cifar10" else 30
        labels = [(i * n + j) % 10 for j in range(n)] if name == "cifar10" else [(j * 7) % 100 for j in range(n)]
        data = np.repeat(np.array(labels, dtype=np.uint8)[:, None] + 1, 3072, axis=1)
        with (root / folder / file).open("wb") as f:
            pickle.dump({"data": data, key: labels, "batch_label": file}, f)
    meta = "batches.meta" if name == "cifar10" else "meta"
    with (root / folder / meta).open("wb") as f:
        pickle.dump({"label_names": [str(k) for k in range(10)]}, f)


@pytest.mark.parametrize(("name", "n_train", "n_val", "classes"), [("cifar10", 50, 10, 10), ("cifar100", 30, 30, 100)])
def test_cifar_from_small_pickles(tmp_path: Path, name: str, n_train: int, n_val: int, classes: int) -> None:
    write_cifar(tmp_path, name)
    s = load(DataSpec(name=name, root=str(tmp_path)))
    assert (len(s.train), len(s.val), s.num_classes, s.in_chans, s.image_size) == (n_train, n_val, classes, 3, 32)
    assert s.train[0][0].shape == (3, 32, 32) and len(s.mean) == 3
    for ds in (s.train, s.val):
        x, y = ds.tensors
        raw = (x[:, 1, 5, 5] * s.std[1] + s.mean[1]) * 255
        assert torch.allclose(raw, (y + 1).float(), atol=1e-2)


def test_cifar_root_may_be_the_batches_folder(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10")
    s = load(DataSpec(name="cifar10", root=str(tmp_path / "cifar-10-batches-py"), train_size=20))
    assert len(s.train) == 20 and Counter(labels_of(s.train)) == {k: 2 for k in range(10)}


def test_corrupt_cifar_pickle_names_the_file(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar100")
    (tmp_path / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    with pytest.raises(KWLabError, match=r"cifar-100-python/test: not a readable CIFAR pickle"):
        load(DataSpec(name="cifar100", root=str(tmp_path)))


def test_missing_cifar_lists_expected_files(tmp_path: Path) -> None:
    with pytest.raises(KWLabError, match=r"cifar-100-python/\{train,test\} under " + str(tmp_path)):
        load(DataSpec(name="cifar100", root=str(tmp_path)))


# ---------------------------------------------------------------- imagefolder


def write_images(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_split: dict | None = None) -> None:
    from PIL import Image

    per_split = per_split or {"train": 3, "val": 2}
    for split, n in per_split.items():
        for k, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                color = (200 * k, 40 * i, 100)
                ext = "png" if i % 2 == 0 else "jpg"
                Image.new("RGB", (12, 10), color).save(root / split / cls / f"{i}.{ext}")


def test_imagefolder_from_small_pngs(tmp_path: Path) -> None:
    write_images(tmp_path)
    s = load(DataSpec(name="imagefolder", root=str(tmp_path), image_size=16))
    assert (len(s.train), len(s.val), s.num_classes, s.in_chans, s.image_size) == (6, 4, 2, 3, 16)
    image, label = s.train[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 0
    assert labels_of(s.val).tolist() == [0, 0, 1, 1]
    red = image[0, 8, 8] * s.std[0] + s.mean[0]  # class 0 has red channel 0
    assert abs(float(red)) < 0.02


def test_imagefolder_default_size_and_train_size(tmp_path: Path) -> None:
    write_images(tmp_path, per_split={"train": 4, "val": 1})
    s = load(DataSpec(name="imagefolder", root=str(tmp_path), train_size=4), seed=2)
    assert s.image_size == 224 and s.train[0][0].shape == (3, 224, 224)
    assert Counter(labels_of(s.train)) == {0: 2, 1: 2}


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(KWLabError, match=rf"train/<class>.* under {tmp_path} "):
        load(DataSpec(name="imagefolder", root=str(tmp_path)))
    write_images(tmp_path)
    (tmp_path / "val" / "dog").rename(tmp_path / "val" / "cow")
    with pytest.raises(KWLabError, match=r"val: class folders must match train/'s; differing: cow, dog"):
        load(DataSpec(name="imagefolder", root=str(tmp_path)))
    (tmp_path / "val" / "cow").rename(tmp_path / "val" / "dog")
    (tmp_path / "train" / "cat" / "0.png").write_bytes(b"not an image")
    s = load(DataSpec(name="imagefolder", root=str(tmp_path), image_size=8))
    with pytest.raises(KWLabError, match=r"cat/0\.png: not a readable image"):
        s.train[0]
