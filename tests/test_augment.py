"""Training augmentation: the batched crop/flip of in-memory sets against a per-image reference, its defaults per
dataset, the `data.augment` validation, and timm's imagefolder transforms."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from kwlab.data import DataSpec, load
from kwlab.data.augment import AugmentConfig
from kwlab.data.crop_flip import CropFlip, crop_flip
from kwlab.data.transforms import eval_transform, posterize, train_transform
from kwlab.errors import KWLabError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def batch(n: int = 16, c: int = 3, size: int = 6) -> torch.Tensor:
    """Images whose every pixel is distinct, so a crop's position can be read off its values."""
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(7))


def padded(images: torch.Tensor, padding: int, fill: torch.Tensor) -> torch.Tensor:
    """Plain per-image reference of the padding (N, C, H + 2p, W + 2p)."""
    n, c, h, w = images.shape
    out = fill.view(1, c, 1, 1).repeat(n, 1, h + 2 * padding, w + 2 * padding)
    out[:, :, padding : padding + h, padding : padding + w] = images
    return out


def windows(image: torch.Tensor, padding: int, fill: torch.Tensor, flip: bool) -> list[torch.Tensor]:
    """Every output the crop (and flip) may give for one image (C, H, W)."""
    big = padded(image[None], padding, fill)[0]
    h, w = image.shape[1:]
    offsets = range(2 * padding + 1)
    crops = [big[:, top : top + h, left : left + w] for top in offsets for left in offsets]
    return crops + [torch.flip(crop, dims=[-1]) for crop in crops] if flip else crops


# ---------------------------------------------------------------- the batched op


@pytest.mark.parametrize(("padding", "flip"), [(2, True), (1, False), (0, True), (3, False)])
def test_each_output_is_a_shifted_or_flipped_window_of_its_input(padding: int, flip: bool) -> None:
    images, fill = batch(), torch.tensor([-1.0, -2.0, -3.0])
    out = crop_flip(images, torch.Generator().manual_seed(0), padding, flip, fill)
    assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
    for image, result in zip(images, out, strict=True):
        assert any(torch.equal(result, window) for window in windows(image, padding, fill, flip))
    if padding == 0 and not flip:
        assert torch.equal(out, images)


def test_draws_cover_offsets_and_flips() -> None:
    images, fill = batch(n=400, c=1, size=5), torch.zeros(1)
    out = crop_flip(images, torch.Generator().manual_seed(1), 1, True, fill)
    seen = set()
    for image, result in zip(images, out, strict=True):
        kinds = windows(image, 1, fill, True)
        seen.add(next(k for k, window in enumerate(kinds) if torch.equal(result, window)))
    assert seen == set(range(18))  # all 9 offsets, each plain and mirrored


def test_flip_only_is_torch_flip() -> None:
    images = batch(n=64)
    out = crop_flip(images, torch.Generator().manual_seed(2), 0, True, torch.zeros(3))
    flipped = torch.tensor([torch.equal(o, torch.flip(i, dims=[-1])) for i, o in zip(images, out, strict=True)])
    same = torch.tensor([torch.equal(o, i) for i, o in zip(images, out, strict=True)])
    assert bool((flipped | same).all()) and 10 < int(flipped.sum()) < 54


def test_padding_uses_the_fill_value_per_channel() -> None:
    images = torch.full((32, 2, 4, 4), 5.0)
    out = crop_flip(images, torch.Generator().manual_seed(3), 4, False, torch.tensor([-1.0, -2.0]))
    for channel, fill in enumerate((-1.0, -2.0)):
        values = set(out[:, channel].unique().tolist())
        assert values <= {5.0, fill} and fill in values


def test_randomness_comes_only_from_the_generator() -> None:
    images, fill = batch(n=32), torch.zeros(3)
    a = crop_flip(images, torch.Generator().manual_seed(11), 2, True, fill)
    torch.manual_seed(999)  # another global RNG state changes nothing
    before = torch.get_rng_state()
    b = crop_flip(images, torch.Generator().manual_seed(11), 2, True, fill)
    assert torch.equal(torch.get_rng_state(), before)  # and the global RNG is not advanced
    c = crop_flip(images, torch.Generator().manual_seed(12), 2, True, fill)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generator_state_fixes_the_output() -> None:
    images, fill = batch(n=32), torch.zeros(3)
    generator = torch.Generator().manual_seed(5)
    crop_flip(images, generator, 2, True, fill)  # advance it: the state, not the seed, decides
    saved = generator.get_state()
    first = crop_flip(images, generator, 2, True, fill)
    second = crop_flip(images, torch.Generator().set_state(saved), 2, True, fill)
    assert torch.equal(first, second)
    assert not torch.equal(first, crop_flip(images, generator, 2, True, fill))  # and it moves on


def test_keeps_channels_last_and_dtype() -> None:
    images = batch(n=4).to(memory_format=torch.channels_last)
    out = crop_flip(images, torch.Generator().manual_seed(0), 1, True, torch.zeros(3))
    assert out.is_contiguous(memory_format=torch.channels_last)
    half = crop_flip(batch(n=4).bfloat16(), torch.Generator().manual_seed(0), 1, True, torch.zeros(3))
    assert half.dtype == torch.bfloat16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_a_cuda_generator() -> None:
    images, fill = batch(n=64).cuda(), torch.zeros(3)
    a = crop_flip(images, torch.Generator("cuda").manual_seed(4), 2, True, fill)
    b = crop_flip(images, torch.Generator("cuda").manual_seed(4), 2, True, fill)
    assert a.device == images.device and torch.equal(a, b)
    for image, result in zip(images.cpu(), a.cpu(), strict=True):
        assert any(torch.equal(result, window) for window in windows(image, 2, fill, True))


# ---------------------------------------------------------------- defaults per dataset


def test_digits_are_never_flipped() -> None:
    assert load(DataSpec()).augment is None  # default: no crop, no flip
    s = load(DataSpec(augment={"crop_padding": 1}))
    assert s.augment == CropFlip(padding=1, flip=False, fill=s.augment.fill)
    assert s.augment.fill == pytest.approx((-s.mean[0] / s.std[0],))
    images = s.train.tensors[0][:200]
    out = s.augment(images, torch.Generator().manual_seed(0))
    fill = torch.tensor(s.augment.fill)
    for image, result in zip(images, out, strict=True):
        assert any(torch.equal(result, window) for window in windows(image, 1, fill, flip=False))
    with pytest.raises(KWLabError, match=r"^data\.augment\.flip: digits images are not mirror-symmetric"):
        load(DataSpec(augment={"flip": True}))


def test_synthetic_has_none_unless_asked() -> None:
    assert load(DataSpec(name="synthetic", length=60)).augment is None
    s = load(DataSpec(name="synthetic", length=60, augment={"flip": True}))
    assert s.augment is not None and (s.augment.padding, s.augment.flip) == (0, True)
    off = load(DataSpec(name="synthetic", length=60, augment={"flip": True, "enabled": False}))
    assert off.augment is None


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [("digits", "auto_augment", "rand-m9-mstd0.5-inc1"), ("synthetic", "crop_scale", [0.5, 1.0]),
     ("digits", "crop_pct", 0.9), ("digits", "random_erasing", 0.25)],
)
def test_in_memory_sets_refuse_imagefolder_fields(name: str, field: str, value: object) -> None:
    with pytest.raises(KWLabError, match=rf"^data\.augment\.{field}: .* does not apply to {name} "):
        load(DataSpec(name=name, length=60, augment={field: value}))


# ---------------------------------------------------------------- data.augment validation


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"crop_padding": -1}, "data.augment.crop_padding: expected an integer >= 0, got -1"),
        ({"crop_padding": 1.5}, "data.augment.crop_padding: expected an integer or null, got 1.5"),
        ({"flip": "yes"}, "data.augment.flip: expected true or false or null, got 'yes'"),
        ({"enabled": None}, "data.augment.enabled: expected true or false, got None"),
        ({"random_erasing": 1.5}, "data.augment.random_erasing: expected a number in [0, 1], got 1.5"),
        ({"color_jitter": -0.1}, "data.augment.color_jitter: expected a number >= 0, got -0.1"),
        ({"crop_pct": 0}, "data.augment.crop_pct: expected a number in (0, 1], got 0"),
        ({"crop_scale": [0.5, 0.2]}, "data.augment.crop_scale: expected [min, max] with 0 < min <= max <= 1, "
                                     "got [0.5, 0.2]"),
        ({"crop_ratio": [1.0]}, "data.augment.crop_ratio: expected [min, max] with 0 < min <= max, got [1.0]"),
        ({"interpolation": "cubic"}, "data.augment.interpolation: 'cubic' is not one of 'bilinear', 'bicubic', "
                                     "'nearest'"),
        ({"auto_augment": "rand-m9-mstd0.5-inc1", "color_jitter": 0.4},
         "data.augment.color_jitter: timm applies no colour jitter with auto_augment 'rand-m9-mstd0.5-inc1'; "
         "set one of them to null"),
    ],
)
def test_bad_values_name_the_dotted_key(values: dict, message: str) -> None:
    with pytest.raises(KWLabError) as error:
        DataSpec(augment=values)
    assert str(error.value) == message


@pytest.mark.parametrize("policy", ["foo", "rand-m9-inc", "rand-m9-w0", "randx", "augmix-q3", "rand-m9x", ""])
def test_bad_auto_augment_is_one_line(policy: str) -> None:
    with pytest.raises(KWLabError, match=r"^data\.augment\.auto_augment: expected a timm policy such as ") as error:
        DataSpec.from_dict({"augment": {"auto_augment": policy}})
    assert "\n" not in str(error.value) and repr(policy) in str(error.value)


@pytest.mark.parametrize("policy", ["rand-m9-mstd0.5-inc1", "rand-m7-n3", "augmix-m5-w4-d2", "original", "v0"])
def test_timm_policies_are_accepted_and_round_trip(policy: str) -> None:
    augment = AugmentConfig(auto_augment=policy, crop_scale=(0.25, 1), random_erasing=0.25)
    assert augment.crop_scale == (0.25, 1.0)
    assert AugmentConfig.from_dict(augment.to_dict()) == augment


# ---------------------------------------------------------------- imagefolder transforms (timm)


def photo(width: int = 300, height: int = 260) -> Image.Image:
    """A smooth colour gradient image."""
    x = torch.linspace(0, 255, width).view(1, width).expand(height, width)
    y = torch.linspace(0, 255, height).view(height, 1).expand(height, width)
    pixels = torch.stack([x, y, 255 - x], dim=-1).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def normalised_range() -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


@pytest.mark.parametrize("values", [{}, {"auto_augment": "rand-m9-mstd0.5-inc1", "interpolation": "bicubic"},
                                    {"color_jitter": 0.4, "flip": False, "crop_scale": [0.5, 1.0]}])
def test_train_transform_gives_normalised_crops(values: dict) -> None:
    transform = train_transform(AugmentConfig(**values), 224, MEAN, STD)
    low, high = normalised_range()
    torch.manual_seed(0)
    random.seed(0)  # timm's auto-augment draws its ops and magnitudes from Python's random
    outs = [transform(photo()) for _ in range(4)]
    for out in outs:
        assert out.shape == (3, 224, 224) and out.dtype == torch.float32
        assert bool((out >= low - 1e-5).all()) and bool((out <= high + 1e-5).all())
    assert not all(torch.equal(outs[0], out) for out in outs[1:])  # random crops differ


@pytest.mark.parametrize("policy", ["rand-m9-mstd0.5-inc1", "rand-m1", "augmix-m5-w4-d2", "v0", "originalr"])
def test_posterize_at_zero_bits_gives_a_black_image_on_any_pillow(policy: str) -> None:
    """The reference's RandAugment asks for 0 bits at magnitude 10, which Pillow 13 refuses mid-epoch."""
    transform = train_transform(AugmentConfig(auto_augment=policy, crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0],
                                              flip=False), 32, MEAN, STD)
    step = next(step for step in transform.transforms if hasattr(step, "ops") or hasattr(step, "policy"))
    ops = list(getattr(step, "ops", [])) + [op for sub in getattr(step, "policy", []) for op in sub]
    posterizing = [op for op in ops if op.name.startswith("Posterize")]
    assert posterizing
    op = posterizing[0]
    op.prob, op.magnitude, op.magnitude_std = 1.0, 10.0 if "Increasing" in op.name else 0.0, 0.0
    assert op.level_fn(op.magnitude, op.hparams) == (0,)  # timm asks for 0 bits here
    assert set(op(photo(40, 40)).getdata()) == {(0, 0, 0)}
    assert posterize(photo(8, 8), 8).tobytes() == photo(8, 8).tobytes()
    kept = posterize(photo(8, 8), 2)
    assert set(kept.getdata()) <= {(r, g, b) for r in (0, 64, 128, 192) for g in (0, 64, 128, 192)
                                   for b in (0, 64, 128, 192)}


def test_random_erasing_and_disabled_augmentation() -> None:
    erase = train_transform(AugmentConfig(random_erasing=1.0, crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0]),
                            32, MEAN, STD)
    low, high = normalised_range()
    torch.manual_seed(0)
    out = erase(photo(40, 40))
    assert bool(((out < low - 1e-3) | (out > high + 1e-3)).any())  # per-pixel normal noise leaves [0, 1]
    off = AugmentConfig(enabled=False, auto_augment="rand-m9-mstd0.5-inc1")
    assert torch.equal(train_transform(off, 32, MEAN, STD)(photo()), eval_transform(off, 32, MEAN, STD)(photo()))


def test_eval_transform_resizes_then_centre_crops() -> None:
    framed = Image.new("RGB", (256, 256), (255, 0, 0))
    framed.paste(Image.new("RGB", (224, 224), (0, 0, 255)), (16, 16))  # a blue square in a 16-pixel red frame
    blue = (torch.tensor([0.0, 0.0, 1.0]) - torch.tensor(MEAN)) / torch.tensor(STD)
    out = eval_transform(AugmentConfig(), 224, MEAN, STD)(framed)  # crop_pct 0.875: resize 256, crop 224
    assert out.shape == (3, 224, 224) and torch.allclose(out, blue.view(3, 1, 1).expand(3, 224, 224), atol=1e-4)
    whole = eval_transform(AugmentConfig(crop_pct=1.0), 224, MEAN, STD)(framed)  # resize 224: the frame stays in
    assert not torch.allclose(whole[:, 0, 0], blue, atol=0.1)


def test_imagefolder_refuses_crop_padding() -> None:
    with pytest.raises(KWLabError, match=r"^data\.augment\.crop_padding: 4 does not apply to imagefolder "):
        train_transform(AugmentConfig(crop_padding=4), 32, MEAN, STD)
