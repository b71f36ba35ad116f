"""Learning-rate schedules as multipliers of the base rate, per optimizer step."""
from __future__ import annotations

import math
from typing import Callable


def lr_multiplier(schedule: str, total_steps: int, *, milestones=(0.5, 0.75), lr_min_ratio: float = 0.0,
                  warmup_steps: int = 0) -> Callable[[int], float]:
    """Return f(step) -> multiplier. ``cyclic``/``onecycle``: linear up to the peak at 40% then down to 0
    (Fast-AT's cyclic schedule); ``piecewise``: x0.1 at each milestone (fractions of training);
    ``cosine``: cosine decay to ``lr_min_ratio``; ``constant``. ``warmup_steps`` ramps linearly first.
    """
    total = max(1, total_steps)

    def base(step: int) -> float:
        t = min(step, total) / total
        if schedule == "constant":
            return 1.0
        if schedule in ("cyclic", "onecycle"):
            peak = 0.4
            return t / peak if t <= peak else max(0.0, (1 - t) / (1 - peak))
        if schedule == "piecewise":
            return 0.1 ** sum(t >= m for m in milestones)
        if schedule == "cosine":
            return lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        raise ValueError(f"Unknown schedule {schedule!r}")

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return base(step) * (step + 1) / warmup_steps
        return base(step)

    return f
