"""The per-epoch validator: clean accuracy, and robust accuracy where the modality has a validation attack.

Images: PGD (fixed subset, fixed seed), plus FGSM accuracy when the catastrophic-overfitting guard
needs it. Texts: clean accuracy on the evaluation split (their training threat lives in embedding
space, which no input-space attack reaches).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .. import attacks
from ..evaluation._common import eval_mode
from ..modality import Modality


def validator(modality: Modality, x_val, y_val: torch.Tensor, threat, *, steps: int, batch_size: int,
              with_fgsm: bool, seed: int) -> Callable[[nn.Module], dict]:
    robust = modality.validation_attack is not None and threat is not None and threat.eps > 0
    n = modality.size(x_val)

    def accuracy(model, attack=None) -> float:
        correct = 0
        for i in range(0, n, batch_size):
            idx = torch.arange(i, min(i + batch_size, n))
            xb, yb = modality.take(x_val, idx), y_val[idx.to(y_val.device)]
            if attack is not None:
                xb = attack(model, xb, yb)
            correct += int((modality.logits(model, xb, batch_size).argmax(1) == yb.cpu()).sum())
        return correct / n if n else float("nan")

    def validate(model: nn.Module) -> dict:
        with eval_mode(model):
            out = {"val_clean_acc": accuracy(model)}
            if robust and n:
                pgd = attacks.create(modality.validation_attack, threat, steps=steps, step_size=2.5 * threat.eps / steps,
                                     seed=seed)
                out["val_robust_acc"] = accuracy(model, pgd)
                if with_fgsm:
                    out["val_fgsm_acc"] = accuracy(model, attacks.create("fgsm", threat, seed=seed))
        return out
    return validate
