"""FGSM-AT and Fast-AT: single-step adversarial training (the catastrophic-overfitting guard applies)."""
from __future__ import annotations

from .base import crafting_model, optional_step_size, register_objective
from .mixed import _Mixed


@register_objective("fgsm")
class FGSMTraining(_Mixed):
    """FGSM-AT (Goodfellow et al. 2015): ``clean + lam * adv`` with single-step FGSM from the clean point.

    ``step_size`` defaults to eps. Crafted in eval mode by default. Prone to catastrophic
    overfitting at large eps; the trainer's guard watches for it (``single_step``).
    ``clip_start=False`` takes the gradient at the unclipped random start (see
    :class:`robustkit.attacks.fgsm.FGSM`).
    """

    single_step = True

    def __init__(self, threat, *, step_size: float | None = None, random_start: bool = False,
                 clip_start: bool = True, **kw):
        super().__init__(threat, **kw)
        self.step_size = optional_step_size(step_size, self.name)
        self.random_start = bool(random_start)
        self.clip_start = bool(clip_start)

    def craft(self, model, x, y, eps):
        e = self._threat(eps).eps
        step = e if self.step_size is None else self.step_size * (e / self.threat.eps if self.threat.eps else 1)
        return self._attack("fgsm", eps, step_size=step, random_start=self.random_start,
                            clip_start=self.clip_start)(crafting_model(model), x, y)


@register_objective("fast")
class FastTraining(FGSMTraining):
    """Fast-AT (Wong, Rice & Kolter 2020): FGSM from a uniform random start with step 1.25·eps,
    training on the adversarial loss alone (``adv_only`` defaults to True)."""

    def __init__(self, threat, *, step_size: float | None = None, adv_only: bool = True, **kw):
        super().__init__(threat, step_size=(1.25 * threat.eps if step_size is None and threat is not None
                                            else step_size), random_start=True, adv_only=adv_only, **kw)
