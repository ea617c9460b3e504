"""`imagefolder`: an ImageNet-style tree root/{train,val[,test]}/<class>/<image>, decoded lazily per item.

With root/test/ the three folders are the three splits. Without it (ImageNet's own layout: its test labels are not
public) val/ becomes the test split and val is held out of train/ (data.val_size, data.split_seed). Training images
go through timm's augmentation (kwlab.data.transforms), val and test through resize + centre crop; all are
normalised with the ImageNet constants.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from kwlab.data.holdout import holdout, refuse_test_size, stratified_subset
from kwlab.data.registry import DataSpec, Splits, register
from kwlab.data.roots import DEFAULT_BASE, missing_error, resolve_root
from kwlab.data.transforms import Transform, eval_transform, train_transform

if TYPE_CHECKING:  # torchvision is imported when a folder is read, not when kwlab.data is
    from torchvision.datasets import ImageFolder
from kwlab.errors import KWLabError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
# NOTE: without a test/ folder, val/ becomes the test split and val is held out of train/: 5% of it (ImageNet:
# 64k, about the size of its official 50k val set), raised to one image per class when 5% is fewer, so every
# class is seen in model selection
VAL_FRACTION = 0.05


class FolderView(Dataset):
    """The images `indices` of an ImageFolder (built without a transform) through `transform`."""

    def __init__(self, folder: ImageFolder, indices: Sequence[int], transform: Transform) -> None:
        self.folder, self.indices, self.transform = folder, [int(i) for i in indices], transform
        self.targets = [folder.targets[i] for i in self.indices]
        self.classes = folder.classes

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.folder[self.indices[index]]
        return self.transform(image), label


def _rgb_loader(path: str) -> Image.Image:
    """Open an image as RGB, turning an unreadable file into a KWLabError naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as err:  # includes PIL.UnidentifiedImageError
        raise KWLabError(f"{path}: not a readable image ({err})") from None


def _folder(path: Path, classes: list[str] | None = None) -> ImageFolder:
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(path), loader=_rgb_loader)
    except (FileNotFoundError, OSError) as err:  # no class folders / no images in a class
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise KWLabError(f"{path}: expected <class>/ subfolders holding .png/.jpg images ({msg})") from None
    if classes is not None and folder.classes != classes:
        only = sorted(set(classes) ^ set(folder.classes))
        raise KWLabError(f"{path}: class folders must match train/'s; differing: {', '.join(only[:5])}")
    return folder


def _default_val_size(targets: list[int], classes: list[str], where: Path) -> int:
    """5% of train/, at least one image per class; every class needs two images (one to train, one to hold out)."""
    counts = Counter(targets)
    single = [classes[k] for k in range(len(classes)) if counts[k] < 2]
    if single:
        n = counts[classes.index(single[0])]
        raise KWLabError(f"{where / single[0]}: holds {n} image(s); a val split held out of train/ needs at least 2"
                         " per class (add images, or a test/ folder to keep val/ as val)")
    return max(math.ceil(VAL_FRACTION * len(targets)), len(classes))


@register("imagefolder")
def load_imagefolder(spec: DataSpec, seed: int) -> Splits:
    """ImageFolder trees: train/, val/, test/; without test/, val/ is the test split and val comes out of train/."""
    refuse_test_size(spec, "imagefolder", "root/test/, or root/val/ when there is no test/")
    root, origin = resolve_root(spec, DEFAULT_BASE)
    if not ((root / "train").is_dir() and (root / "val").is_dir()):
        raise missing_error(
            "imagefolder",
            "train/<class>/*.png|jpg and val/<class>/*.png|jpg (and optionally test/<class>/)",
            root,
            origin,
            "set data.root / KWLAB_DATA to a folder holding train/ and val/ class subfolders",
        )
    size = spec.image_size or DEFAULT_SIZE
    evaluate = eval_transform(spec.augment, size, IMAGENET_MEAN, IMAGENET_STD)
    train_folder = _folder(root / "train")
    val_folder = _folder(root / "val", train_folder.classes)
    targets = np.asarray(train_folder.targets, dtype=np.int64)
    if (root / "test").is_dir():
        if spec.val_size is not None:
            raise KWLabError(f"data.val_size: {spec.val_size!r} does not apply: {root / 'val'} is the validation "
                             f"split when {root / 'test'} exists; set it to null")
        test_folder = _folder(root / "test", train_folder.classes)
        test = FolderView(test_folder, range(len(test_folder)), evaluate)
        train = np.arange(len(targets))
        val = FolderView(val_folder, range(len(val_folder)), evaluate)
    else:
        size_held = spec.val_size
        if size_held is None:
            size_held = _default_val_size(train_folder.targets, train_folder.classes, root / "train")
        train, held = holdout(targets, size_held, spec.split_seed, "data.val_size", "imagefolder train/")
        val = FolderView(train_folder, held, evaluate)
        test = FolderView(val_folder, range(len(val_folder)), evaluate)
    if spec.train_size is not None:
        train = train[stratified_subset(targets[train], spec.train_size, spec.split_seed, "imagefolder")]
    return Splits(
        train=FolderView(train_folder, train, train_transform(spec.augment, size, IMAGENET_MEAN, IMAGENET_STD)),
        val=val,
        test=test,
        num_classes=len(train_folder.classes),
        in_chans=3,
        image_size=size,
        name="imagefolder",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
