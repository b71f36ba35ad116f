"""Random-noise baseline: uniform noise in the linf ball or Gaussian noise scaled to the l2 sphere.

Not an adversarial attack; a floor that any real attack must beat (and a gradient-free reference
for sanity checks). ``draws`` noise samples are tried per input; the first that fools it is kept.

Arguments: ``distribution`` ("uniform" or "gaussian"), ``draws`` (1).
"""
from __future__ import annotations

import torch

from .._validation import check_choice, check_number
from .base import Attack, fooled
from .registry import register_attack


@register_attack("noise")
class Noise(Attack):
    """Random noise in the threat ball: a floor every real attack must beat."""

    kind = "black-box"

    def __init__(self, threat, *, distribution: str = "uniform", draws: int = 1, **kw):
        super().__init__(threat, **kw)
        self.distribution = check_choice(distribution, "distribution", ("uniform", "gaussian"), owner="noise")
        self.draws = check_number(draws, "draws", owner="noise", low=1, integer=True)

    def _sample(self, x, generator):
        if self.distribution == "uniform":
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            noise = (2 * u - 1) * self.threat.eps
            if self.threat.norm == "l2":  # a uniform cube direction, rescaled onto the sphere
                noise = self.threat.steepest_direction(noise) * self.threat.eps
        else:
            g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            noise = self.threat.steepest_direction(g) * self.threat.eps if self.threat.norm == "l2" \
                else (g * self.threat.eps / 2).clamp(-self.threat.eps, self.threat.eps)
        return self.threat.project(x + noise, x)

    @torch.no_grad()
    def _perturb(self, model, x, y, target, generator):
        out = self._sample(x, generator)
        done = fooled(model(out), y, target)
        for _ in range(self.draws - 1):
            cand = self._sample(x, generator)
            take = ~done & fooled(model(cand), y, target)
            out[take] = cand[take]
            done |= take
        return out
