"""FGSM — Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples" (ICLR 2015).

One step of size ``step_size`` (default ``eps``) along the steepest-ascent direction of the loss for
the threat's norm (sign of the gradient for linf, normalized gradient for l2). With
``random_start=True`` and ``step_size=1.25*eps`` it is the "Fast" attack of Wong, Rice & Kolter
(ICLR 2020) used by Fast adversarial training. ``clip_start=False`` takes the gradient at the random
start *before* it is clipped to the input bounds, as Wong et al.'s reference code does: on images
whose pixels mostly sit at the bounds (MNIST) clipping removes half of the start's randomness, and
Fast-AT at eps=0.3 then overfits catastrophically. The returned example is always inside the bounds.

Shapes: x (N, ...) in the threat's bounds, y (N,) -> x_adv like x.
Example: ``create("fgsm", ThreatModel("linf", 0.1))(model, x, y)``
"""
from __future__ import annotations

from .._validation import check_choice, check_number
from .base import LOSSES, Attack, check_flag, input_grad
from .registry import register_attack


@register_attack("fgsm")
class FGSM(Attack):
    """One gradient step of size step_size (Goodfellow et al. 2015); with random_start, Fast-AT's attack."""

    def __init__(self, threat, *, step_size: float | None = None, random_start: bool = False,
                 loss: str = "ce", clip_start: bool = True, **kw):
        super().__init__(threat, **kw)
        # A zero step is meaningful only in a zero-radius ball (eps warm-up schedules start there).
        self.step_size = threat.eps if step_size is None else check_number(
            step_size, "step_size", owner="fgsm", low=0, low_inclusive=threat.eps == 0)
        self.random_start = check_flag(random_start, "random_start", "fgsm")
        self.clip_start = check_flag(clip_start, "clip_start", "fgsm")
        self.loss = check_choice(loss, "loss", LOSSES, owner="fgsm")

    def _perturb(self, model, x, y, target, generator):
        x0 = self.threat.random_start(x, generator, clip=self.clip_start) if self.random_start else x
        grad, _, _ = input_grad(model, x0, y, LOSSES[self.loss], target)
        return self.threat.project(x0 + self.step_size * self.threat.steepest_direction(grad), x)
