"""PGD adversarial training (Madry et al. 2018)."""
from __future__ import annotations

from ..._validation import check_number
from .base import crafting_model, optional_step_size, register_objective
from .mixed import _Mixed


@register_objective("pgd")
class PGDTraining(_Mixed):
    """PGD-AT (Madry et al. 2018): adversarial loss alone, k-step PGD with a random start.

    ``step_size`` defaults to 2.5·eps/steps. Crafted in eval mode by default (no BN pollution).
    """

    def __init__(self, threat, *, steps: int = 10, step_size: float | None = None, random_start: bool = True,
                 adv_only: bool = True, **kw):
        super().__init__(threat, adv_only=adv_only, **kw)
        self.steps = check_number(steps, "steps", owner="pgd", low=1, integer=True)
        self.step_size = optional_step_size(step_size, self.name)
        self.random_start = bool(random_start)

    def craft(self, model, x, y, eps):
        e = self._threat(eps).eps
        step = 2.5 * e / self.steps if self.step_size is None else self.step_size * (e / self.threat.eps)
        return self._attack("pgd", eps, steps=self.steps, step_size=step, random_start=self.random_start,
                            early_stop=False)(crafting_model(model), x, y)
