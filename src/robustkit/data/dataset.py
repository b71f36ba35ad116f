"""The in-memory dataset container every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Dataset:
    """Train and test tensors in the natural input range ([0, 1] for images, NCHW) with metadata."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bounds: tuple[float, float] = (0.0, 1.0)
    extra: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def spec(self) -> dict:
        """What a checkpoint records about its data, to refuse auditing on a mismatched dataset."""
        return {"name": self.name, "modality": "vision", "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "class_names": list(self.class_names), "mean": list(self.mean), "std": list(self.std),
                "bounds": list(self.bounds)}

    def limited(self, limit: int, seed: int = 0) -> "Dataset":
        """The first ``limit`` samples of each split (``load_dataset(..., limit=N)``)."""
        self.x_train, self.y_train = self.x_train[:limit], self.y_train[:limit]
        self.x_test, self.y_test = self.x_test[:limit], self.y_test[:limit]
        return self

    def split_validation(self, size: int | float, seed: int = 0) -> tuple["Dataset", torch.Tensor, torch.Tensor]:
        """Hold out a deterministic (by seed) validation set from the training split.

        Returns (dataset with the reduced training split, x_val, y_val).
        """
        n = self.x_train.shape[0]
        n_val = int(round(size * n)) if isinstance(size, float) and size < 1 else int(size)
        if not 0 < n_val < n:
            raise ValueError(f"The 'size' parameter of split_validation must leave both parts non-empty "
                             f"(0 < size < {n}). Got {size!r} instead.")
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=g)
        val, train = perm[:n_val], perm[n_val:]
        reduced = Dataset(self.name, self.x_train[train], self.y_train[train], self.x_test, self.y_test,
                          self.class_names, self.mean, self.std, self.bounds, dict(self.extra))
        return reduced, self.x_train[val], self.y_train[val]
