"""Normalization as the model's first layer, so attacks always work in input space (DESIGN decision 1)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t, std_t = torch.as_tensor(list(mean), dtype=torch.float32), torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.shape != std_t.shape or mean_t.dim() != 1:
            raise ValueError(f"The 'mean' and 'std' parameters of Normalize must be sequences of equal length. "
                             f"Got {list(mean)} and {list(std)} instead.")
        if bool((std_t <= 0).any()):
            raise ValueError(f"The 'std' parameter of Normalize must be positive. Got {list(std)} instead.")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
