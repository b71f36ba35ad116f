"""MI-FGSM — Dong et al., "Boosting Adversarial Attacks with Momentum" (CVPR 2018).

Iterative FGSM whose direction is the sign of an accumulated, L1-normalized gradient
(g <- decay * g + grad / ||grad||_1); for the l2 threat the step is along g / ||g||_2.

Arguments: ``steps`` (10), ``step_size`` (eps / steps), ``decay`` (1.0), ``random_start`` (False).
Shapes: x (N, ...), y (N,) -> x_adv like x.
"""
from __future__ import annotations

import torch

from .._validation import check_number
from .base import Attack, ce_loss, check_flag, input_grad
from .registry import register_attack


@register_attack("mifgsm")
class MIFGSM(Attack):
    """Iterative FGSM with gradient momentum, which transfers better (Dong et al. 2018)."""

    def __init__(self, threat, *, steps: int = 10, step_size: float | None = None, decay: float = 1.0,
                 random_start: bool = False, **kw):
        super().__init__(threat, **kw)
        self.steps = check_number(steps, "steps", owner="mifgsm", low=1, integer=True)
        self.step_size = (threat.eps / self.steps if step_size is None
                          else check_number(step_size, "step_size", owner="mifgsm", low=0,
                                            low_inclusive=threat.eps == 0))  # 0 only in a 0-radius ball
        self.decay = check_number(decay, "decay", owner="mifgsm", low=0)  # 0: plain iterative FGSM
        self.random_start = check_flag(random_start, "random_start", "mifgsm")

    def _perturb(self, model, x, y, target, generator):
        x_adv = self.threat.random_start(x, generator) if self.random_start else x.clone()
        momentum = torch.zeros_like(x)
        for _ in range(self.steps):
            grad, _, _ = input_grad(model, x_adv, y, ce_loss, target)
            l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
            momentum = self.decay * momentum + grad / l1
            x_adv = self.threat.project(x_adv + self.step_size * self.threat.steepest_direction(momentum), x)
        return x_adv
