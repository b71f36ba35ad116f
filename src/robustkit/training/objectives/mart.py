"""MART (Wang et al. 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._validation import check_number
from .base import AdversarialObjective, _acc, crafting_model, optional_step_size, register_objective


@register_objective("mart")
class MART(AdversarialObjective):
    """MART (Wang et al. 2020): BCE(p(x'), y) + beta · KL(p(x) || p(x')) · (1 - p_y(x)).

    BCE = -log p_y(x') - log(1 - max_{k != y} p_k(x')) boosts the margin on misclassified examples.
    x' by PGD on cross-entropy, crafted in eval mode.
    """

    def __init__(self, threat, *, beta: float = 6.0, steps: int = 10, step_size: float | None = None, **kw):
        super().__init__(threat, **kw)
        self.beta = check_number(beta, "beta", owner="mart", low=0)
        self.steps = check_number(steps, "steps", owner="mart", low=1, integer=True)
        self.step_size = optional_step_size(step_size, self.name)

    def craft(self, model, x, y, eps):
        e = self._threat(eps).eps
        step = 2.5 * e / self.steps if self.step_size is None else self.step_size
        return self._attack("pgd", eps, steps=self.steps, step_size=step, early_stop=False)(crafting_model(model), x, y)

    def loss_from(self, model, x, x_adv, y):
        logits = model(torch.cat([x, x_adv]))
        lc, la = logits[: x.shape[0]], logits[x.shape[0]:]
        p_adv, p_clean = F.softmax(la, 1), F.softmax(lc, 1)
        others = p_adv.clone()
        others.scatter_(1, y[:, None], 0.0)
        bce = F.cross_entropy(la, y) - torch.log(1.0001 - others.amax(1)).mean()
        p_true = p_clean.gather(1, y[:, None]).squeeze(1)
        kl = (F.kl_div(torch.log(p_adv + 1e-12), p_clean, reduction="none").sum(1) * (1 - p_true)).mean()
        return bce + self.beta * kl, {"clean_acc": _acc(lc, y), "adv_acc": _acc(la, y)}
