"""Batched random crop (from a padded copy) and horizontal flip of in-memory images, on their own device.

One gather over the whole batch, no per-image Python loop; every random draw comes from the caller's generator, so
a training epoch is a pure function of its (seed, epoch) generator, which exact resume relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int, flip: bool, fill: torch.Tensor
) -> torch.Tensor:
    """Crop each (N, C, H, W) image at a random offset of its `padding`-padded copy, mirror half of them if `flip`."""
    n, c, h, w = images.shape
    device = images.device
    if padding:
        padded = images.new_empty((n, c, h + 2 * padding, w + 2 * padding))  # (N, C, H + 2p, W + 2p)
        padded[:] = fill.to(device=device, dtype=images.dtype).view(1, c, 1, 1)
        padded[:, :, padding : padding + h, padding : padding + w] = images
        # draw order (top, left, flip) is part of the contract: changing it changes every seeded run
        top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)  # (N,)
        left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)  # (N,)
    else:
        padded = images
        top = left = torch.zeros(n, dtype=torch.long, device=device)
    rows = top[:, None] + torch.arange(h, device=device)  # (N, H): source row of each output row
    cols = left[:, None] + torch.arange(w, device=device)  # (N, W): source column of each output column
    if flip:
        mirrored = torch.rand(n, generator=generator, device=device) < 0.5  # (N,)
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)  # a flipped crop reads its columns backwards
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=device).view(1, c, 1, 1)
    out = padded[batch, channel, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]  # (N, C, H, W)
    if not images.is_contiguous() and images.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)  # keep the recipe's memory format
    return out


@dataclass(frozen=True)
class CropFlip:
    """`Splits.augment` of an in-memory set: `crop_flip` with fixed settings, called as augment(images, generator).

    `fill` is the normalised value of a black pixel per channel, (0 - mean) / std.
    """

    padding: int
    flip: bool
    fill: tuple[float, ...]

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment one training batch (N, C, H, W) on its device."""
        return crop_flip(images, generator, self.padding, self.flip, torch.tensor(self.fill))
