"""SMART's smoothness-inducing regularizer (Jiang et al. 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._validation import check_number
from ...modality import embedding
from .base import _acc, optional_step_size, register_objective
from .embed_pgd import _model_inputs, _TextObjective


def _sym_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    la, lb = F.log_softmax(logits_a.float(), -1), F.log_softmax(logits_b.float(), -1)
    return (F.kl_div(lb, la, log_target=True, reduction="batchmean")
            + F.kl_div(la, lb, log_target=True, reduction="batchmean"))


@register_objective("smart")
class SMART(_TextObjective):
    """SMART's smoothness-inducing regularizer (Jiang et al. 2020): ``CE(f(x), y) + lam_s · symKL(f(x), f(x+δ))``
    with δ from ``steps`` projected ascent steps on KL(f(x) || f(x+δ)) from a small random start
    (``init_scale`` of the radius). The Bregman proximal-point (momentum teacher) part of the paper is
    not included.
    """

    def __init__(self, threat, *, lam: float = 1.0, steps: int = 1, step_size: float | None = None,
                 init_scale: float = 0.1, **kw):
        super().__init__(threat, **kw)
        self.lam = check_number(lam, "lam", owner="smart", low=0)
        self.steps = check_number(steps, "steps", owner="smart", low=1, integer=True)
        self.step_size = optional_step_size(step_size, self.name)
        self.init_scale = check_number(init_scale, "init_scale", owner="smart", low=0)

    def __call__(self, model, x, y, *, eps=None):
        x = _model_inputs(x)
        logits = model(x)
        e = self._threat(eps).eps
        step = e if self.step_size is None else self.step_size
        p_clean = F.softmax(logits.detach().float(), -1)
        delta = self._craft(model, x, embedding.kl_loss(p_clean), eps, self.steps, step, True, self.init_scale)
        logits_adv = model(x, delta=delta)
        reg = _sym_kl(logits, logits_adv)
        return F.cross_entropy(logits, y) + self.lam * reg, {"clean_acc": _acc(logits, y),
                                                             "adv_acc": _acc(logits_adv, y),
                                                             "sym_kl": float(reg.detach())}
