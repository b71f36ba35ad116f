"""Plain cross-entropy, for images and texts alike."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Objective, _acc, register_objective


@register_objective("standard")
class Standard(Objective):
    """Plain cross-entropy: the baseline (no threat model needed). Text batches are dicts that may carry
    non-tensor entries (raw texts); only the tensors go to the model."""

    needs_threat = False
    modalities = ("vision", "text")
    select_best_by = "clean"

    def __call__(self, model, x, y, *, eps=None):
        if isinstance(x, dict):
            x = {k: v for k, v in x.items() if isinstance(v, torch.Tensor)}
        logits = model(x)
        return F.cross_entropy(logits, y), {"clean_acc": _acc(logits, y)}
