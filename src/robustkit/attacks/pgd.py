"""PGD — Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks" (ICLR 2018).

Projected steepest ascent on the loss inside the threat model's ball (linf: sign steps; l2:
normalized-gradient steps), from a uniformly random start in the ball.

Arguments: ``steps`` (20), ``step_size`` (default 2.5 * eps / steps, Madry's rule), ``random_start``
(True), ``restarts`` (1; each restart runs only on samples not yet fooled), ``loss`` ("ce", "dlr",
"margin"), ``early_stop`` (True: a fooled sample keeps its adversarial example and leaves the
batch; training objectives turn it off to maximize the loss on every sample).

Shapes: x (N, ...) in the threat's bounds, y (N,) -> x_adv like x. Targeted with ``target=``.
Example: ``create("pgd", ThreatModel("l2", 1.5), steps=50, restarts=5)(model, x, y)``
"""
from __future__ import annotations

import torch

from .._validation import check_choice, check_number
from .base import LOSSES, Attack, BestTracker, check_flag, fooled, input_grad
from .registry import register_attack


@register_attack("pgd")
class PGD(Attack):
    """Projected gradient ascent from a random start, with restarts (Madry et al. 2018)."""

    def __init__(self, threat, *, steps: int = 20, step_size: float | None = None, random_start: bool = True,
                 restarts: int = 1, loss: str = "ce", early_stop: bool = True, **kw):
        super().__init__(threat, **kw)
        self.steps = check_number(steps, "steps", owner="pgd", low=1, integer=True)
        self.step_size = (2.5 * threat.eps / self.steps if step_size is None
                          else check_number(step_size, "step_size", owner="pgd", low=0,
                                            low_inclusive=threat.eps == 0))  # 0 only in a 0-radius ball
        self.random_start = check_flag(random_start, "random_start", "pgd")
        self.restarts = check_number(restarts, "restarts", owner="pgd", low=1, integer=True)
        self.loss = check_choice(loss, "loss", LOSSES, owner="pgd")
        self.early_stop = check_flag(early_stop, "early_stop", "pgd")

    def _perturb(self, model, x, y, target, generator):
        loss_fn = LOSSES[self.loss]
        best = BestTracker(x)
        for _ in range(self.restarts):
            idx = best.active()
            if idx.numel() == 0:
                break
            x_a, y_a = x[idx], y[idx]
            t_a = None if target is None else target[idx]
            x_adv = self.threat.random_start(x_a, generator) if self.random_start else x_a.clone()
            for _ in range(self.steps):
                grad, logits, loss = input_grad(model, x_adv, y_a, loss_fn, t_a)
                if self.early_stop:
                    ok = fooled(logits, y_a, t_a)
                    if bool(ok.any()):
                        best.update(idx[ok], x_adv[ok], loss[ok], ok[ok])
                        keep = ~ok
                        idx, x_a, y_a, x_adv, grad = idx[keep], x_a[keep], y_a[keep], x_adv[keep], grad[keep]
                        t_a = None if t_a is None else t_a[keep]
                        if idx.numel() == 0:
                            break
                x_adv = self.threat.project(x_adv + self.step_size * self.threat.steepest_direction(grad), x_a)
            if not self.early_stop and self.restarts == 1:
                return x_adv  # training use: the last iterate, without a scoring pass it does not need
            if idx.numel():
                with torch.no_grad():
                    logits = model(x_adv)
                best.update(idx, x_adv, loss_fn(logits, y_a, t_a), fooled(logits, y_a, t_a))
        return best.x_best
