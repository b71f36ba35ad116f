"""Seeded in-memory batches of tensors for the trainer (the text counterpart is data.text.text_batches)."""
from __future__ import annotations

import math
from typing import Iterator

import torch


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, *, rank: int = 0,
                   world: int = 1, drop_last: bool = False):
    """Shuffled in-memory batches; the order of epoch e depends only on (seed, e), so resume is exact.

    Under DDP each rank takes a disjoint stride of the same permutation.
    """
    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm = torch.randperm(x.shape[0], generator=g)[rank::world]
        stop = len(perm) - (len(perm) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            idx = perm[i:i + batch_size]
            yield x[idx], y[idx]
    epoch_batches.num_batches = math.ceil(len(range(rank, x.shape[0], world)) / batch_size)  # type: ignore[attr-defined]
    return epoch_batches
