"""TRADES (Zhang et al. 2019)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._validation import check_number
from .base import AdversarialObjective, _acc, crafting_model, optional_step_size, register_objective


def _kl_inner_max(model, x, p_clean, threat, steps, step_size, generator, dtype):
    """TRADES' inner maximization: ascend KL(p(x) || p(x')) from x + 0.001·N(0, I)."""
    x_adv = threat.clip(x + 0.001 * torch.randn(x.shape, generator=generator, dtype=dtype, device=x.device))
    for _ in range(steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv), 1), p_clean, reduction="sum")
        (g,) = torch.autograd.grad(kl, x_adv)
        x_adv = threat.project(x_adv.detach() + step_size * threat.steepest_direction(g), x)
    return x_adv.detach()


@register_objective("trades")
class TRADES(AdversarialObjective):
    """TRADES (Zhang et al. 2019): CE(f(x), y) + beta · KL(f(x) || f(x')), x' maximizing the KL.

    Inner maximization in eval mode (as the reference code does), outer loss in train mode.
    """

    def __init__(self, threat, *, beta: float = 6.0, steps: int = 10, step_size: float | None = None, **kw):
        super().__init__(threat, **kw)
        self.beta = check_number(beta, "beta", owner="trades", low=0)
        self.steps = check_number(steps, "steps", owner="trades", low=1, integer=True)
        self.step_size = optional_step_size(step_size, self.name)

    def craft(self, model, x, y, eps):
        threat = self._threat(eps)
        step = 2.5 * threat.eps / self.steps if self.step_size is None else self.step_size
        gen = torch.Generator(device=x.device).manual_seed(self._next_seed())
        bare = crafting_model(model)
        was_training = bare.training
        if self.attack_mode == "eval":
            bare.eval()
        try:
            with torch.no_grad():
                p_clean = F.softmax(bare(x), 1)
            return _kl_inner_max(bare, x, p_clean, threat, self.steps, step, gen, x.dtype)
        finally:
            bare.train(was_training)

    def loss_from(self, model, x, x_adv, y):
        logits = model(torch.cat([x, x_adv]))
        lc, la = logits[: x.shape[0]], logits[x.shape[0]:]
        kl = F.kl_div(F.log_softmax(la, 1), F.softmax(lc, 1), reduction="batchmean")
        loss = F.cross_entropy(lc, y) + self.beta * kl
        return loss, {"clean_acc": _acc(lc, y), "adv_acc": _acc(la, y)}
