"""Seeded in-memory batches of tensors for the trainer (the text counterpart is data.text.text_batches)."""
from __future__ import annotations

import math
from typing import Iterator

import torch


def shard_of(global_batch: list | torch.Tensor, rank: int, world: int):
    """This rank's share of one global batch: a stride, so the ranks' union is the global batch."""
    return global_batch[rank::world]


def check_divisible(batch_size: int, world: int) -> None:
    if batch_size % world:
        raise ValueError(f"The 'batch_size' parameter of TrainConfig is the global batch and must be divisible by "
                         f"the number of processes ({world}). Got {batch_size} instead.")


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, *, rank: int = 0,
                   world: int = 1, drop_last: bool = False):
    """Shuffled in-memory batches; the order of epoch e depends only on (seed, e), so resume is exact.

    ``batch_size`` is the global batch. Under DDP each of the ``world`` ranks takes a stride of every
    global batch, so one step of N processes sees exactly the batch one process would (and the epoch's
    union over ranks is the single-process epoch); a last global batch smaller than ``world`` is dropped
    (every rank must take the same number of steps, or the gradient all-reduce would wait forever).
    """
    check_divisible(batch_size, world)
    n = x.shape[0]
    full = n // batch_size
    rest = n - full * batch_size
    keep_rest = rest >= world and not drop_last

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=g)
        stop = full * batch_size + (rest if keep_rest else 0)
        for i in range(0, stop, batch_size):
            idx = shard_of(perm[i:i + batch_size], rank, world)
            yield x[idx], y[idx]
    epoch_batches.num_batches = full + int(keep_rest)  # type: ignore[attr-defined]
    return epoch_batches
