"""C&W L2 — Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks" (S&P 2017).

Minimizes ||x' - x||_2^2 + c * max(z_y - max_{j!=y} z_j, -kappa) over x' = box(tanh(w)) with Adam,
and binary-searches the trade-off constant c per sample. It is a minimum-norm attack: the
smallest successful perturbation found is returned, then (like every attack here) projected into
the threat model, so with a small eps the result may not fool the model.

Arguments: ``steps`` (100 Adam steps per search step), ``binary_search_steps`` (5),
``initial_const`` (1.0), ``lr`` (0.01), ``kappa`` (0.0, confidence margin).
"""
from __future__ import annotations

import torch

from .._validation import check_number
from .base import Attack, margin
from .registry import register_attack


@register_attack("cw-l2")
class CWL2(Attack):
    """Minimum-L2-norm attack with Adam and a binary search on the trade-off constant (Carlini & Wagner 2017)."""

    norms = ("l2",)  # it minimizes an L2 distance: under linf it would be neither attack

    def __init__(self, threat, *, steps: int = 100, binary_search_steps: int = 5, initial_const: float = 1.0,
                 lr: float = 0.01, kappa: float = 0.0, **kw):
        super().__init__(threat, **kw)
        self.steps = check_number(steps, "steps", owner="cw-l2", low=1, integer=True)
        self.binary_search_steps = check_number(binary_search_steps, "binary_search_steps", owner="cw-l2",
                                                low=1, integer=True)
        self.initial_const = check_number(initial_const, "initial_const", owner="cw-l2", low=0, low_inclusive=False)
        self.lr = check_number(lr, "lr", owner="cw-l2", low=0, low_inclusive=False)
        self.kappa = check_number(kappa, "kappa", owner="cw-l2", low=0)

    def _perturb(self, model, x, y, target, generator):
        lo, hi = self.threat.bounds if self.threat.bounds is not None else (None, None)
        if lo is None:
            raise ValueError("The 'threat' parameter of cw-l2 must have input bounds (the tanh change of "
                             "variables needs a box). Got bounds=None instead.")
        n = x.shape[0]
        scale, mid = (hi - lo) / 2, (hi + lo) / 2
        # Shrink slightly so atanh stays finite at the box edges.
        w0 = torch.atanh(((x - mid) / scale).clamp(-1 + 1e-6, 1 - 1e-6))
        const = torch.full((n,), self.initial_const, device=x.device, dtype=x.dtype)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, float("inf"))
        best_norm = torch.full_like(const, float("inf"))
        best_x = x.clone()
        for _ in range(self.binary_search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
            for _ in range(self.steps):
                x_adv = torch.tanh(w) * scale + mid
                logits = model(x_adv)
                if target is None:
                    m = margin(logits, y)
                else:
                    z_t = logits.gather(1, target[:, None]).squeeze(1)
                    other = logits.clone()
                    other.scatter_(1, target[:, None], float("-inf"))
                    m = other.amax(1) - z_t
                dist = (x_adv - x).flatten(1).pow(2).sum(1)
                loss = (dist + const * m.clamp_min(-self.kappa)).sum()
                (g,) = torch.autograd.grad(loss, w)
                w.grad = g
                opt.step()
                with torch.no_grad():
                    ok = m < 0
                    better = ok & (dist.sqrt() < best_norm)
                    best_norm[better] = dist.sqrt()[better].to(best_norm.dtype)
                    best_x[better] = x_adv.detach()[better]
                    succeeded |= ok
            # Binary search: success -> try a smaller constant; failure -> a larger one.
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(torch.isinf(upper), const * 10, (lower + upper) / 2)
        return best_x
