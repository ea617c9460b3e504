"""`imagefolder`: an ImageNet-style tree root/{train,val}/<class>/<image>, decoded lazily per item."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torch.utils.data import Subset
from torchvision import transforms
from torchvision.datasets import ImageFolder

from kwlab.data.registry import DataSpec, Splits, register
from kwlab.data.roots import DEFAULT_BASE, missing_error, resolve_root
from kwlab.data.tensors import stratified_subset
from kwlab.errors import KWLabError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224


def _rgb_loader(path: str) -> Image.Image:
    """Open an image as RGB, turning an unreadable file into a KWLabError naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as err:  # includes PIL.UnidentifiedImageError
        raise KWLabError(f"{path}: not a readable image ({err})") from None


def _folder(path: Path, transform: transforms.Compose) -> ImageFolder:
    try:
        return ImageFolder(str(path), transform=transform, loader=_rgb_loader)
    except (FileNotFoundError, OSError) as err:  # no class folders / no images in a class
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise KWLabError(f"{path}: expected <class>/ subfolders holding .png/.jpg images ({msg})") from None


@register("imagefolder")
def load_imagefolder(spec: DataSpec, seed: int) -> Splits:
    """ImageFolder train/val trees, shorter side resized to image_size (224) + centre crop, ImageNet normalisation."""
    root, origin = resolve_root(spec, DEFAULT_BASE)
    if not ((root / "train").is_dir() and (root / "val").is_dir()):
        raise missing_error(
            "imagefolder",
            "train/<class>/*.png|jpg and val/<class>/*.png|jpg",
            root,
            origin,
            "set data.root / KWLAB_DATA to a folder holding train/ and val/ class subfolders",
        )
    size = spec.image_size or DEFAULT_SIZE
    transform = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    train, val = _folder(root / "train", transform), _folder(root / "val", transform)
    if val.classes != train.classes:
        only = sorted(set(train.classes) ^ set(val.classes))
        raise KWLabError(f"{root / 'val'}: class folders must match train/'s; differing: {', '.join(only[:5])}")
    train_set = train
    if spec.train_size is not None:
        keep = stratified_subset(train.targets, spec.train_size, seed, "imagefolder")
        train_set = Subset(train, keep.tolist())
    return Splits(
        train=train_set,
        val=val,
        num_classes=len(train.classes),
        in_chans=3,
        image_size=size,
        name="imagefolder",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
