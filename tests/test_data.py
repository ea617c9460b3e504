"""Tests for kwlab.data: the train/val/test splits of every loader on small files written here, plus the real Debian
Fashion-MNIST if present. Pixel values encode where an image came from, so the tests check content, not just sizes."""

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
from kwlab.data.crop_flip import CropFlip
from kwlab.errors import KWLabError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KWLAB_DATA", raising=False)


def labels_of(dataset) -> np.ndarray:
    return np.array([dataset[i][1] for i in range(len(dataset))])


def rows(dataset) -> set[bytes]:
    """Each image of an in-memory set as bytes: equal images give equal rows."""
    return {image.numpy().tobytes() for image in dataset.tensors[0]}


def assert_disjoint(s: Splits) -> None:
    """No image of val or test is in train, and none is in both val and test (by content)."""
    train, val, test = rows(s.train), rows(s.val), rows(s.test)
    assert len(train) == len(s.train) and len(val) == len(s.val) and len(test) == len(s.test)  # all distinct
    assert not train & val and not train & test and not val & test


def class_shares(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=classes) / len(labels)


# ---------------------------------------------------------------- digits: a fixed three-way split


def test_available_lists_every_builtin() -> None:
    assert set(available()) >= {"digits", "fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic"}
    assert available() == sorted(available())


def test_digits_default_three_way_split() -> None:
    s = load(DataSpec())
    assert isinstance(s, Splits) and s.name == "digits"
    assert (s.num_classes, s.in_chans, s.image_size) == (10, 1, 8)
    # test = ceil(0.2 * 1797) = 360 first, then val = ceil(0.2 * 1437) = 288 of the rest, 1149 left to train
    assert (len(s.train), len(s.val), len(s.test)) == (1149, 288, 360)
    image, label = s.test[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < 10
    assert_disjoint(s)  # the 1797 digits are all distinct images


def test_digits_splits_are_stratified() -> None:
    s = load(DataSpec(val_size=0.25, test_size=0.3))
    everything = np.concatenate([labels_of(d) for d in (s.train, s.val, s.test)])
    shares = class_shares(everything, 10)
    for split in (s.train, s.val, s.test):
        assert np.abs(class_shares(labels_of(split), 10) - shares).max() < 0.01
    assert len(s.test) == 540 and len(s.val) == 315  # ceil(0.3 * 1797), ceil(0.25 * 1257)


def test_digits_counts_and_train_size() -> None:
    s = load(DataSpec(test_size=100, val_size=100, train_size=500, image_size=16), seed=1)
    assert (len(s.train), len(s.val), len(s.test), s.image_size) == (500, 100, 100, 16)
    assert s.train[0][0].shape == (1, 16, 16) and s.test[0][0].shape == (1, 16, 16)
    counts = Counter(labels_of(s.train))
    assert len(counts) == 10 and max(counts.values()) - min(counts.values()) <= 3  # stratified subset


def test_split_ignores_the_trial_seed_and_follows_split_seed() -> None:
    a, b = load(DataSpec(train_size=400), seed=3), load(DataSpec(train_size=400), seed=4)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).tensors[0], getattr(b, split).tensors[0])
    c = load(DataSpec(train_size=400, split_seed=1), seed=3)
    for split in ("train", "val", "test"):
        assert rows(getattr(a, split)) != rows(getattr(c, split))
    assert rows(a.train) | rows(a.val) | rows(a.test) != rows(c.train) | rows(c.val) | rows(c.test)  # subset moved


def test_digits_normalised_with_train_statistics() -> None:
    s = load(DataSpec())
    x = s.train.tensors[0]
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    assert len(s.mean) == 1 and 0.2 < s.mean[0] < 0.4 and 0.3 < s.std[0] < 0.45  # pixels scaled by 1/16 first
    for held in (s.val, s.test):  # the train constants: close to standard
        assert abs(float(held.tensors[0].mean())) < 0.1
    # the same raw pixel maps to the same value in every split: the smallest raw value (0) is -mean/std everywhere
    for split in (s.train, s.val, s.test):
        assert float(split.tensors[0].min()) == pytest.approx(-s.mean[0] / s.std[0], abs=1e-5)


def test_holdout_errors_name_the_key() -> None:
    with pytest.raises(KWLabError, match=r"^data\.train_size: 5000 exceeds the 1149 training images of digits$"):
        load(DataSpec(train_size=5000))
    with pytest.raises(KWLabError, match=r"^data\.val_size: 1437 cannot be held out of the 1437 digits training"):
        load(DataSpec(val_size=1437))
    with pytest.raises(KWLabError, match=r"^data\.test_size: 5 cannot be held out of the 1797 digits images \(") as e:
        load(DataSpec(test_size=5))  # fewer than the 10 classes: no stratified split
    assert "\n" not in str(e.value)


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
        ({"test_size": 1.0}, "test_size"),
        ({"test_size": "0.2"}, "test_size"),
        ({"split_seed": -1}, "split_seed"),
        ({"split_seed": 1.5}, "split_seed"),
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
    with pytest.raises(KWLabError, match=rf"^data\.{field}: [^\n]*$"):
        DataSpec(**kwargs)


def test_holdout_size_message() -> None:
    with pytest.raises(KWLabError, match=r"^data\.val_size: expected a fraction in \(0, 1\), a count >= 1 or null, "
                                         r"got 1\.5$"):
        DataSpec(val_size=1.5)


def test_spec_normalises_and_round_trips(tmp_path: Path) -> None:
    spec = DataSpec(name="synthetic", root=tmp_path, shape=[1, 4, 4], val_size=10, split_seed=3)  # type: ignore
    assert spec.root == str(tmp_path) and spec.shape == (1, 4, 4)
    assert DataSpec.from_dict(spec.to_dict()) == spec
    assert DataSpec().to_dict()["val_size"] is None and DataSpec().split_seed == 0
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
        return load(DataSpec(name="synthetic", length=60, shape=(1, 2, 2)), seed)

    assert "tiny" in available() and load(DataSpec(name="tiny")).num_classes == 10


def test_bad_seed_is_clear() -> None:
    with pytest.raises(KWLabError, match="seed: expected an integer"):
        load(DataSpec(), seed="1")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["synthetic", "fashion_mnist", "cifar10", "imagefolder"])
def test_test_size_only_for_digits(name: str, tmp_path: Path) -> None:
    with pytest.raises(KWLabError, match=rf"^data\.test_size: 0\.1 does not apply to {name}, whose test split is "):
        load(DataSpec(name=name, root=str(tmp_path), test_size=0.1))


# ---------------------------------------------------------------- synthetic


def test_synthetic_sizes_deterministic_and_learnable() -> None:
    spec = DataSpec(name="synthetic", shape=(1, 8, 8), num_classes=4, length=200)
    a, b, c = load(spec, seed=0), load(spec, seed=5), load(DataSpec.from_dict({**spec.to_dict(), "split_seed": 1}))
    # length = train + val (val 0.2 of it), test another length // 4
    assert (len(a.train), len(a.val), len(a.test), a.num_classes, a.in_chans, a.image_size) == (160, 40, 50, 4, 1, 8)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    assert_disjoint(a)
    pool = Counter(a.train.tensors[1].tolist()) + Counter(a.val.tensors[1].tolist())
    assert all(abs(n - pool[k] / 5) <= 1 for k, n in Counter(a.val.tensors[1].tolist()).items())  # stratified
    x, y = a.train.tensors
    centroids = torch.stack([x[y == k].mean(0).flatten() for k in range(4)])
    for held in (a.val, a.test):
        xv, yv = held.tensors
        predicted = torch.cdist(xv.flatten(1), centroids).argmin(1)
        assert (predicted == yv).float().mean() > 0.9  # label-dependent means: a nearest-centroid model learns it


def test_synthetic_default() -> None:
    s = load(DataSpec(name="synthetic"))
    assert (len(s.train), len(s.val), len(s.test)) == (409, 103, 128) and s.augment is None


# ---------------------------------------------------------------- fashion_mnist (IDX)


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)


def write_fashion(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = True) -> None:
    """Tiny IDX set: every pixel of an image is 20 * label (+ 10 in the t10k test files), except pixels (0, 0) and
    (0, 1), which carry the image's index within its class so that all images are distinct."""
    suffix = ".gz" if gz else ""
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 10)):
        labels = np.arange(n) % 10
        images = np.repeat((labels * 20 + offset)[:, None, None], 28, axis=1).repeat(28, axis=2)
        images[:, 0, 0], images[:, 0, 1] = (np.arange(n) // 10) % 256, np.arange(n) // 2560
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)


def raw_of(s: Splits, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel (5, 5) of every image back in 0..255, labels) of one split of a 1-channel set."""
    x, y = getattr(s, split).tensors
    return (x[:, 0, 5, 5] * s.std[0] + s.mean[0]) * 255, y


def test_fashion_mnist_splits_from_small_idx_files(tmp_path: Path) -> None:
    write_fashion(tmp_path)
    s = load(DataSpec(name="fashion_mnist", root=str(tmp_path), val_size=10))
    assert (len(s.train), len(s.val), len(s.test), s.num_classes, s.in_chans, s.image_size) == (50, 10, 20, 10, 1, 28)
    for split, offset in (("train", 0), ("val", 0), ("test", 10)):  # val from train-*, test = the t10k files
        raw, y = raw_of(s, split)
        assert torch.allclose(raw, (y * 20 + offset).float(), atol=1e-2), split
    assert Counter(s.val.tensors[1].tolist()) == {k: 1 for k in range(10)}
    assert_disjoint(s)
    assert abs(float(s.train.tensors[0].mean())) < 1e-4


def test_fashion_mnist_default_val_is_5000(tmp_path: Path) -> None:
    write_fashion(tmp_path, n_train=5100)
    s = load(DataSpec(name="fashion_mnist", root=str(tmp_path)))
    assert (len(s.train), len(s.val), len(s.test)) == (100, 5000, 20)
    assert isinstance(s.augment, CropFlip) and (s.augment.padding, s.augment.flip) == (2, True)
    assert s.augment.fill == pytest.approx((-s.mean[0] / s.std[0],))
    write_fashion(tmp_path / "small")
    with pytest.raises(KWLabError, match=r"^data\.val_size: 5000 cannot be held out of the 60 fashion_mnist training"):
        load(DataSpec(name="fashion_mnist", root=str(tmp_path / "small")))


def test_fashion_mnist_train_size_subset_is_stratified_and_split_seeded(tmp_path: Path) -> None:
    write_fashion(tmp_path, n_train=120)
    spec = DataSpec(name="fashion_mnist", root=str(tmp_path), val_size=20, train_size=20)
    a, b = load(spec, seed=0), load(spec, seed=7)
    c = load(DataSpec.from_dict({**spec.to_dict(), "split_seed": 1}))
    assert (len(a.train), len(a.val), len(a.test)) == (20, 20, 20)
    assert Counter(labels_of(a.train)) == {k: 2 for k in range(10)}
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])  # trial seeds share the subset
    assert rows(a.train) != rows(c.train)


@pytest.mark.parametrize("layout", ["raw", "torchvision", "env"])
def test_fashion_mnist_other_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    if layout == "raw":  # uncompressed files
        write_fashion(tmp_path, gz=False)
        spec = DataSpec(name="fashion_mnist", root=str(tmp_path), val_size=10)
    elif layout == "torchvision":  # root/FashionMNIST/raw
        write_fashion(tmp_path / "FashionMNIST" / "raw")
        spec = DataSpec(name="fashion_mnist", root=str(tmp_path), val_size=10)
    else:  # $KWLAB_DATA replaces the default root
        write_fashion(tmp_path)
        monkeypatch.setenv("KWLAB_DATA", str(tmp_path))
        spec = DataSpec(name="fashion_mnist", val_size=10)
    s = load(spec)
    assert (len(s.train), len(s.test)) == (50, 20)


@pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="real Fashion-MNIST absent: apt-get install dataset-fashion-mnist to run this",
)
def test_fashion_mnist_real_debian_files() -> None:
    s = load(DataSpec(name="fashion_mnist", train_size=1000), seed=0)
    assert (len(s.train), len(s.val), len(s.test), s.num_classes, s.in_chans, s.image_size) == (
        1000, 5000, 10000, 10, 1, 28)
    assert Counter(labels_of(s.train)) == {k: 100 for k in range(10)}  # 5500 per class left -> exactly 100 each
    assert Counter(s.val.tensors[1].tolist()) == {k: 500 for k in range(10)}
    assert Counter(s.test.tensors[1].tolist()) == {k: 1000 for k in range(10)}  # the official t10k set
    assert abs(s.mean[0] - 0.286) < 0.01 and abs(s.std[0] - 0.353) < 0.01
    assert not rows(s.train) & rows(s.val)


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


def write_cifar(root: Path, name: str, per_file: int | None = None) -> None:
    """Tiny torchvision-layout pickles: every pixel of an image is its label + 1 (+ 101 in the test file), and its
    first pixel its index in the file, so that all images are distinct and the split each came from shows."""
    folder, files, key = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels"),
        "cifar100": ("cifar-100-python", ["train", "test"], "fine_labels"),
    }[name]
    (root / folder).mkdir(parents=True)
    for i, file in enumerate(files):
        n = per_file or (12 if name == "cifar10" else 60)
        test = file.startswith("test")
        labels = [(i * n + j) % 10 for j in range(n)] if name == "cifar10" else [(j % 10) * 7 for j in range(n)]
        data = np.repeat(np.array(labels, dtype=np.uint8)[:, None] + (101 if test else 1), 3072, axis=1)
        data[:, 0] = (np.arange(n) + (i * n if not test else 0)) % 256  # distinct images within each split
        data[:, 1] = (np.arange(n) + (i * n if not test else 0)) // 256
        with (root / folder / file).open("wb") as f:
            pickle.dump({"data": data, key: labels, "batch_label": file}, f)
    meta = "batches.meta" if name == "cifar10" else "meta"
    with (root / folder / meta).open("wb") as f:
        pickle.dump({"label_names": [str(k) for k in range(10)]}, f)


@pytest.mark.parametrize(("name", "sizes", "classes"), [("cifar10", (50, 10, 12), 10), ("cifar100", (50, 10, 60), 100)])
def test_cifar_splits_from_small_pickles(tmp_path: Path, name: str, sizes: tuple, classes: int) -> None:
    write_cifar(tmp_path, name)
    s = load(DataSpec(name=name, root=str(tmp_path), val_size=10))
    assert (len(s.train), len(s.val), len(s.test), s.num_classes, s.in_chans, s.image_size) == (*sizes, classes, 3, 32)
    assert s.train[0][0].shape == (3, 32, 32) and len(s.mean) == 3
    for split, offset in (("train", 1), ("val", 1), ("test", 101)):  # test = the official test file
        x, y = getattr(s, split).tensors
        raw = (x[:, 1, 5, 5] * s.std[1] + s.mean[1]) * 255
        assert torch.allclose(raw, (y + offset).float(), atol=1e-2), split
    assert len(set(s.val.tensors[1].tolist())) == 10  # stratified: one of each class present
    assert_disjoint(s)


def test_cifar_default_val_is_5000_and_augmentation(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10", per_file=1020)
    s = load(DataSpec(name="cifar10", root=str(tmp_path)))
    assert (len(s.train), len(s.val), len(s.test)) == (100, 5000, 1020)
    fill = tuple(-m / sd for m, sd in zip(s.mean, s.std, strict=True))
    assert s.augment is not None and (s.augment.padding, s.augment.flip) == (4, True)
    assert s.augment.fill == pytest.approx(fill)
    off = load(DataSpec(name="cifar10", root=str(tmp_path), augment={"enabled": False}))
    assert off.augment is None and torch.equal(off.val.tensors[0], s.val.tensors[0])


def test_cifar_root_may_be_the_batches_folder(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10")
    s = load(DataSpec(name="cifar10", root=str(tmp_path / "cifar-10-batches-py"), val_size=10, train_size=20))
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

SPLIT_BLUE = {"train": 100, "val": 150, "test": 50}  # the blue channel tells which folder an image came from


def write_images(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_split: dict | None = None) -> None:
    from PIL import Image

    per_split = per_split or {"train": 3, "val": 2}
    for split, n in per_split.items():
        for k, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                color = (200 * k % 256, 40 * i % 256, SPLIT_BLUE[split])
                ext = "png" if i % 2 == 0 else "jpg"
                Image.new("RGB", (12, 10), color).save(root / split / cls / f"{i}.{ext}")


def paths(dataset) -> set[str]:
    """The image files of an imagefolder split."""
    return {dataset.folder.samples[i][0] for i in dataset.indices}


def blue(s: Splits, dataset, i: int) -> float:
    return float(dataset[i][0][2, 4, 4] * s.std[2] + s.mean[2]) * 255


def test_imagefolder_without_test_holds_val_out_of_train(tmp_path: Path) -> None:
    write_images(tmp_path)
    s = load(DataSpec(name="imagefolder", root=str(tmp_path), image_size=16))
    # default val: 5% of the 6 train/ images, raised to one per class; test = val/
    assert (len(s.train), len(s.val), len(s.test), s.num_classes, s.in_chans, s.image_size) == (4, 2, 4, 2, 3, 16)
    assert labels_of(s.val).tolist() == [0, 1] and labels_of(s.test).tolist() == [0, 0, 1, 1]
    assert not paths(s.train) & paths(s.val) and paths(s.train) | paths(s.val) == {
        str(p) for p in (tmp_path / "train").rglob("*.*")}
    assert paths(s.test) == {str(p) for p in (tmp_path / "val").rglob("*.*")}
    assert all(abs(blue(s, s.val, i) - SPLIT_BLUE["train"]) < 4 for i in range(len(s.val)))
    assert all(abs(blue(s, s.test, i) - SPLIT_BLUE["val"]) < 4 for i in range(len(s.test)))
    image, label = s.test[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 0
    red = image[0, 8, 8] * s.std[0] + s.mean[0]  # class 0 has red channel 0
    assert abs(float(red)) < 0.02 and s.augment is None


def test_imagefolder_with_test_folder_uses_all_three(tmp_path: Path) -> None:
    write_images(tmp_path, per_split={"train": 3, "val": 2, "test": 1})
    s = load(DataSpec(name="imagefolder", root=str(tmp_path), image_size=8), seed=1)
    assert (len(s.train), len(s.val), len(s.test)) == (6, 4, 2)
    for split, folder in (("train", "train"), ("val", "val"), ("test", "test")):
        assert paths(getattr(s, split)) == {str(p) for p in (tmp_path / folder).rglob("*.*")}
    assert all(abs(blue(s, s.test, i) - SPLIT_BLUE["test"]) < 4 for i in range(len(s.test)))
    with pytest.raises(KWLabError, match=r"^data\.val_size: 0\.5 does not apply: .*val is the validation split"):
        load(DataSpec(name="imagefolder", root=str(tmp_path), val_size=0.5))


def test_imagefolder_holdout_is_stratified_and_split_seeded(tmp_path: Path) -> None:
    write_images(tmp_path, classes=("a", "b", "c"), per_split={"train": 8, "val": 1})
    spec = DataSpec(name="imagefolder", root=str(tmp_path), image_size=8)
    a, b = load(spec, seed=0), load(spec, seed=9)
    assert labels_of(a.val).tolist() == [0, 1, 2]  # 5% of 24 -> 2, raised to one per class
    assert paths(a.val) == paths(b.val) and paths(a.train) == paths(b.train)
    vals = {frozenset(paths(load(DataSpec(name="imagefolder", root=str(tmp_path), split_seed=k)).val))
            for k in range(4)}
    assert len(vals) > 1
    c = load(DataSpec(name="imagefolder", root=str(tmp_path), val_size=6, train_size=9))
    assert Counter(labels_of(c.val)) == {0: 2, 1: 2, 2: 2} and Counter(labels_of(c.train)) == {0: 3, 1: 3, 2: 3}
    assert not paths(c.train) & paths(c.val)


def test_imagefolder_default_size_crops_and_train_size(tmp_path: Path) -> None:
    write_images(tmp_path, per_split={"train": 5, "val": 1})
    s = load(DataSpec(name="imagefolder", root=str(tmp_path), train_size=4), seed=2)
    assert s.image_size == 224 and s.train[0][0].shape == (3, 224, 224) and s.test[0][0].shape == (3, 224, 224)
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
    s = load(DataSpec(name="imagefolder", root=str(tmp_path), image_size=8, val_size=2))
    holder = s.train if 0 in s.train.indices else s.val  # folder index 0 is cat/0.png
    with pytest.raises(KWLabError, match=r"cat/0\.png: not a readable image"):
        holder[holder.indices.index(0)]


def test_imagefolder_class_with_one_image_cannot_give_a_val(tmp_path: Path) -> None:
    write_images(tmp_path, per_split={"train": 1, "val": 1})
    with pytest.raises(KWLabError, match=r"train/cat: holds 1 image\(s\); a val split held out of train/ needs"):
        load(DataSpec(name="imagefolder", root=str(tmp_path)))
