"""Square — Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search" (ECCV 2020). The black-box member of AutoAttack.

Score-based random search: it only reads the model's logits, never its gradients, so gradient
masking (detached inputs, saturated softmax, shattered gradients) does not stop it. Each query
changes one random square window of side ``s`` (the same window for the whole batch, as in the
reference code) and keeps the change for a sample only if its margin loss decreased. The window
area shrinks on the paper's schedule ``p_init / 2^k`` over the query budget.

- linf: starts from vertical stripes of +-eps; a window is set to +-eps per channel.
- l2: starts from a tiling of "meta pseudo-Gaussian" patches; a window moves perturbation mass
  from a second random window into the first, keeping ||delta||_2 = eps.

Arguments: ``n_queries`` (5000, queries per sample and restart), ``p_init`` (0.8, AutoAttack's value;
the paper uses 0.05 for linf and 0.1 for l2 on ImageNet), ``restarts`` (1). Samples already fooled
stop being queried (early exit), so the budget is spent only on robust samples.

Shapes: x (N, C, H, W) in the threat's bounds, y (N,) -> x_adv like x. Targeted with ``target=``.
Example: ``create("square", ThreatModel("linf", 0.1), n_queries=1000)(model, x, y)``
"""
from __future__ import annotations

import torch

from .._validation import check_number
from .base import Attack, BestTracker
from .registry import register_attack


def _p_selection(p_init: float, it: int, n_queries: int) -> float:
    """The paper's schedule for the fraction of pixels changed, rescaled to a 10,000-query budget."""
    it = int(it / n_queries * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                       (8000, 256), (10000, 512)):
        if it <= bound:
            return p_init / div
    return p_init / 512


def _rect_pert(h: int, w: int) -> torch.Tensor:
    """Concentric rectangles with weights 1/(k+1)^2, unit l2 norm (the paper's pseudo-Gaussian patch)."""
    delta = torch.zeros(h, w)
    if h == 0 or w == 0:
        return delta
    ch, cw = h // 2, w // 2
    for k in range(max(ch + 1, cw + 1)):
        delta[max(ch - k, 0):min(ch + k + 1, h), max(cw - k, 0):min(cw + k + 1, w)] += 1.0 / (k + 1) ** 2
    return delta / delta.norm()


def _meta_pert(s: int, generator: torch.Generator) -> torch.Tensor:
    """Two pseudo-Gaussian halves of opposite sign, unit l2 norm, randomly transposed."""
    delta = torch.zeros(s, s)
    delta[: s // 2] = _rect_pert(s // 2, s)
    delta[s // 2:] = -_rect_pert(s - s // 2, s)
    delta = delta / delta.norm().clamp_min(1e-12)
    if float(torch.rand(1, generator=generator, device=generator.device)) > 0.5:
        delta = delta.t()
    return delta


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(0, max(high, 1), (1,), generator=generator, device=generator.device))


@register_attack("square")
class Square(Attack):
    """Score-based random search over square windows (Andriushchenko et al. 2020); needs logits only."""

    kind = "black-box"
    fast_layout = True  # forward passes only: channels-last convolutions are 1.3-1.9x faster on CPU

    def __init__(self, threat, *, n_queries: int = 5000, p_init: float = 0.8, restarts: int = 1, **kw):
        super().__init__(threat, **kw)
        self.n_queries = check_number(n_queries, "n_queries", owner="square", low=1, integer=True)
        self.p_init = check_number(p_init, "p_init", owner="square", low=0, high=1, low_inclusive=False)
        self.restarts = check_number(restarts, "restarts", owner="square", low=1, integer=True)

    @staticmethod
    def _score(model, x_adv, y, target):
        """Margin loss to minimize; <= 0 means fooled. Untargeted: z_y - max_{j!=y} z_j;
        targeted: max_{j!=t} z_j - z_t."""
        logits = model(x_adv)
        ref = y if target is None else target
        z_ref = logits.gather(1, ref[:, None]).squeeze(1)
        other = logits.clone()
        other.scatter_(1, ref[:, None], float("-inf"))
        m = z_ref - other.amax(1)
        return m if target is None else -m

    @torch.no_grad()
    def _perturb(self, model, x, y, target, generator):
        if x.dim() != 4:
            raise ValueError(f"The 'x' parameter of square must be an image batch (N, C, H, W). "
                             f"Got shape {tuple(x.shape)} instead.")
        best = BestTracker(x)
        for _ in range(self.restarts):
            idx = best.active()
            if idx.numel() == 0:
                break
            t = None if target is None else target[idx]
            run = self._linf if self.threat.norm == "linf" else self._l2
            x_adv, margin = run(model, x[idx], y[idx], t, generator)
            best.update(idx, x_adv, -margin, margin <= 0)
        return best.x_best

    # -- linf -----------------------------------------------------------------------------------
    def _linf(self, model, x, y, target, generator):
        eps, threat = self.threat.eps, self.threat
        n, c, h, w = x.shape
        lo, hi = threat.bounds if threat.bounds is not None else (float("-inf"), float("inf"))
        signs = torch.randint(0, 2, (n, c, 1, w), generator=generator, device=x.device).to(x.dtype) * 2 - 1
        x_best = threat.project(x + eps * signs, x)
        margin = self._score(model, x_best, y, target)
        # The active set (samples not yet fooled) is compacted only when it changes.
        act = (margin > 0).nonzero().squeeze(1)
        xa, ya, xb, mb = x[act], y[act], x_best[act], margin[act]
        ta = None if target is None else target[act]
        for i in range(self.n_queries - 1):
            if act.numel() == 0:
                break
            p = _p_selection(self.p_init, i, self.n_queries)
            s = min(max(int(round((p * h * w) ** 0.5)), 1), h - 1) if h > 1 else 1
            r, q = _randint(h - s, generator), _randint(w - s, generator)
            x_win, best_win = xa[:, :, r:r + s, q:q + s], xb[:, :, r:r + s, q:q + s]
            new = eps * (torch.randint(0, 2, (act.numel(), c, 1, 1), generator=generator, device=x.device)
                         .to(x.dtype) * 2 - 1)
            cand = (x_win + new).clamp(lo, hi)
            # Resample signs where the (clipped) window would not change, as the reference code does.
            for _ in range(10):
                same = ((cand - best_win).abs() < 1e-7).flatten(1).all(1)
                if not bool(same.any()):
                    break
                flip = torch.randint(0, 2, (int(same.sum()), c, 1, 1), generator=generator, device=x.device)
                cand[same] = (x_win[same] + eps * (flip.to(x.dtype) * 2 - 1)).clamp(lo, hi)
            x_new = xb.clone()
            x_new[:, :, r:r + s, q:q + s] = cand
            m_new = self._score(model, x_new, ya, ta)
            better = m_new < mb
            mb = torch.where(better, m_new, mb)
            xb[better] = x_new[better]
            done = mb <= 0
            if bool(done.any()):  # write the fooled samples back and drop them from the active set
                x_best[act[done]], margin[act[done]] = xb[done], mb[done]
                keep = ~done
                act, xa, ya, xb, mb = act[keep], xa[keep], ya[keep], xb[keep], mb[keep]
                ta = None if ta is None else ta[keep]
        x_best[act], margin[act] = xb, mb
        return x_best, margin

    # -- l2 -------------------------------------------------------------------------------------
    def _l2(self, model, x, y, target, generator):
        eps, threat = self.threat.eps, self.threat
        n, c, h, w = x.shape
        dev, dt = x.device, x.dtype
        delta0 = torch.zeros_like(x)
        s = max(h // 5, 1)
        start = (h - s * 5) // 2 if h >= 5 else 0
        for a in range(start, h - s + 1, s):
            for b in range(start, w - s + 1, s):
                sign = torch.randint(0, 2, (n, c, 1, 1), generator=generator, device=dev).to(dt) * 2 - 1
                delta0[:, :, a:a + s, b:b + s] += _meta_pert(s, generator).to(dev, dt) * sign
        x_best = threat.clip(x + eps * threat.steepest_direction(delta0))
        margin = self._score(model, x_best, y, target)
        for i in range(self.n_queries - 1):
            act = (margin > 0).nonzero().squeeze(1)
            if act.numel() == 0:
                break
            xc, xb = x[act], x_best[act]
            delta = xb - xc
            p = _p_selection(self.p_init, i, self.n_queries)
            s = max(int(round((p * h * w) ** 0.5)), 3)
            s = s + 1 if s % 2 == 0 else s
            s = min(s, h - 1, w - 1)
            r, q = _randint(h - s, generator), _randint(w - s, generator)
            r2, q2 = _randint(h - s, generator), _randint(w - s, generator)
            mask1 = torch.zeros(1, 1, h, w, device=dev, dtype=dt)
            mask1[..., r:r + s, q:q + s] = 1
            mask2 = torch.zeros_like(mask1)
            mask2[..., r2:r2 + s, q2:q2 + s] = 1
            norm_win1 = (delta * mask1).pow(2).sum((2, 3), keepdim=True).sqrt()
            norm_img = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            norm_windows = (delta * torch.maximum(mask1, mask2)).pow(2).sum((2, 3), keepdim=True).sqrt()
            sign = torch.randint(0, 2, (act.numel(), c, 1, 1), generator=generator, device=dev).to(dt) * 2 - 1
            new = _meta_pert(s, generator).to(dev, dt).view(1, 1, s, s) * sign
            new = new + delta[:, :, r:r + s, q:q + s] / (1e-10 + norm_win1)
            budget = ((eps ** 2 - norm_img ** 2).clamp_min(0) / c + norm_windows ** 2).sqrt()
            new = new / new.pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(1e-12) * budget
            delta[:, :, r2:r2 + s, q2:q2 + s] = 0.0
            delta[:, :, r:r + s, q:q + s] = new
            x_new = threat.clip(xc + eps * threat.steepest_direction(delta))
            m_new = self._score(model, x_new, y[act], None if target is None else target[act])
            better = m_new < margin[act]
            margin[act[better]] = m_new[better]
            x_best[act[better]] = x_new[better]
        return x_best, margin
