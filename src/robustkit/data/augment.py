"""Training-time image augmentation, seeded per batch so that a resumed run sees the same batches.

``crop-flip`` is the CIFAR recipe every adversarial-training paper uses (a 32x32 random crop of the
image zero-padded by 4 pixels, and a horizontal flip with probability 1/2), written on whole batches
with tensor indexing: no torchvision needed, and no per-image Python loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("crop-flip",)


def crop_flip(x: torch.Tensor, generator: torch.Generator, *, padding: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``padding``) and horizontal flip of an (N, C, H, W) batch."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = oy[:, None] + torch.arange(h)[None, :]                       # (N, H)
    cols = ox[:, None] + torch.arange(w)[None, :]                       # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)              # a flip reads the columns backwards
    idx_n = torch.arange(n)[:, None, None, None]
    idx_c = torch.arange(c)[None, :, None, None]
    return padded[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]


def augmented(batches, name: str, seed: int):
    """Wrap an ``epoch_batches`` function: batch i of epoch e is augmented with seed (seed, e, i)."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"The 'augment' parameter must be one of {', '.join(AUGMENTATIONS)}. Got {name!r} instead.")

    def epoch_batches(epoch: int):
        for i, (x, y) in enumerate(batches(epoch)):
            g = torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 100_003 + i) % (2 ** 63))
            yield crop_flip(x, g), y
    epoch_batches.num_batches = batches.num_batches  # type: ignore[attr-defined]
    return epoch_batches
