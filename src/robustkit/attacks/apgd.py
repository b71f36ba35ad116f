"""APGD — Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML 2020). The white-box core of AutoAttack.

Step-size-free PGD: it starts with step 2*eps, adds momentum (alpha = 0.75) and halves the step
of a sample at checkpoints where its loss stopped improving (fewer than rho = 0.75 of the steps
since the last checkpoint increased the loss, or the step was not reduced at the last checkpoint
and the best loss has not moved), restarting that sample from its best point. Checkpoints follow
the paper: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06).

``apgd-ce`` ascends cross-entropy; ``apgd-dlr`` the shift- and scale-invariant DLR loss, and with
``targeted=True`` runs the targeted DLR variant against ``n_target_classes`` wrong classes in turn: the most
likely ones (AutoAttack's APGD-T) or, with ``target_rule="margin"``, the nearest boundaries (MALT). Both work for linf and l2. ``steps`` = 100 and ``restarts`` = 1
by default (AutoAttack's budgets); each restart/target runs only on samples still robust.
"""
from __future__ import annotations

import torch

from .._validation import check_choice, check_number
from .base import Attack, BestTracker, ce_loss, check_flag, dlr_loss, fooled, input_grad
from .registry import register_attack


def _checkpoints(steps: int) -> list[int]:
    """Iterations after which the step size may halve: the paper's p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), in whole iterations as the reference code counts
    them (first check after 22% of the steps, each interval 3% shorter, never under 6%). Integer
    arithmetic: ceil(0.57 * 100) on floats gives 58, not the paper's 57."""
    interval = max(int(0.22 * steps), 1)
    shrink, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, at = [], interval
    while at < steps:
        out.append(at)
        interval = max(interval - shrink, shortest)
        at += interval
    return out


TARGET_RULES = ("logits", "margin")


def target_classes(model, x: torch.Tensor, y: torch.Tensor, n: int, rule: str = "logits",
                   norm: str = "linf") -> list[torch.Tensor]:
    """The ``n`` wrong classes to target for each input, first choice first (one tensor per rank).

    ``rule="logits"``: the most likely wrong classes of the clean input (AutoAttack's APGD-T).
    ``rule="margin"``: MALT's choice (Melamed et al., NeurIPS 2023): among the wrong classes with the largest
    logits (a pool of max(2n, 9)), the nearest decision boundaries to first order, i.e. the smallest
    (z_y - z_t) / ||grad_x(z_y - z_t)||_* (dual norm of the threat's: l1 for linf, l2 for l2). A class whose
    logit is a little lower but whose boundary is much closer is attacked first, so fewer targets suffice.
    """
    with torch.no_grad():
        logits = model(x).float().clone()
    rows = torch.arange(len(y), device=logits.device)
    logits[rows, y.to(logits.device)] = float("-inf")
    order = logits.argsort(dim=1, descending=True)
    k = min(n, logits.shape[1] - 1)
    if rule == "logits":
        return [order[:, j] for j in range(k)]
    pool = order[:, :min(max(2 * n, 9), logits.shape[1] - 1)]
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        z = model(xg)
        z_y = z.gather(1, y[:, None].to(z.device)).squeeze(1)
        dist = torch.empty(pool.shape, device=logits.device)
        for j in range(pool.shape[1]):
            diff = z_y - z.gather(1, pool[:, j:j + 1].to(z.device)).squeeze(1)
            (g,) = torch.autograd.grad(diff.sum(), xg, retain_graph=j + 1 < pool.shape[1])
            dual = g.flatten(1).abs().sum(1) if norm == "linf" else g.flatten(1).norm(dim=1)
            dist[:, j] = (diff.detach() / dual.clamp_min(1e-12)).float()
    ranked = pool.gather(1, dist.argsort(dim=1))
    return [ranked[:, j] for j in range(k)]


class _APGD(Attack):
    loss_name = "ce"

    def __init__(self, threat, *, steps: int = 100, restarts: int = 1, rho: float = 0.75,
                 momentum: float = 0.75, targeted: bool = False, n_target_classes: int = 9,
                 target_rule: str = "logits", **kw):
        super().__init__(threat, **kw)
        self.steps = check_number(steps, "steps", owner=self.name, low=1, integer=True)
        self.restarts = check_number(restarts, "restarts", owner=self.name, low=1, integer=True)
        self.rho = check_number(rho, "rho", owner=self.name, low=0, high=1)
        self.momentum = check_number(momentum, "momentum", owner=self.name, low=0, high=1)
        self.targeted = check_flag(targeted, "targeted", self.name)
        self.n_target_classes = check_number(n_target_classes, "n_target_classes", owner=self.name, low=1,
                                             integer=True)
        self.target_rule = check_choice(target_rule, "target_rule", TARGET_RULES, owner=self.name)

    def _loss(self, logits, y, target):
        if self.loss_name == "dlr":
            return dlr_loss(logits, y, target)
        return ce_loss(logits, y, target)

    def _perturb(self, model, x, y, target, generator):
        best = BestTracker(x)
        if self.targeted and target is None:
            # AutoAttack's APGD-T: target the k-th most likely *wrong* class of the clean input, k = 1..n.
            # (AutoAttack takes the k-th largest logit for k = 2..n+1, which is the same on the correctly
            # classified points it attacks; excluding y keeps it right on any point.)
            for targets in target_classes(model, x, y, self.n_target_classes, self.target_rule, self.threat.norm):
                self._run_restarts(model, x, y, targets, generator, best, success_target=None)
        else:
            self._run_restarts(model, x, y, target, generator, best, success_target=target)
        return best.x_best

    def _run_restarts(self, model, x, y, loss_target, generator, best, success_target):
        for _ in range(self.restarts):
            idx = best.active()
            if idx.numel() == 0:
                return
            t = None if loss_target is None else loss_target[idx]
            st = None if success_target is None else success_target[idx]
            self._attack_once(model, x[idx], y[idx], t, st, idx, generator, best)

    def _attack_once(self, model, x, y, loss_target, success_target, idx, generator, best):
        threat = self.threat
        n = x.shape[0]
        shape = (-1,) + (1,) * (x.dim() - 1)
        step = torch.full((n,), 2.0 * threat.eps, device=x.device, dtype=x.dtype)
        checkpoints = set(_checkpoints(self.steps))
        x_adv = threat.random_start(x, generator)
        grad, logits, loss = input_grad(model, x_adv, y, self._loss, loss_target)
        best.update(idx, x_adv, loss, fooled(logits, y, success_target))
        loss_best, x_max, grad_max = loss.clone(), x_adv.clone(), grad.clone()
        x_prev = x_adv.clone()
        increases = torch.zeros(n, device=x.device)
        loss_prev = loss.clone()
        last_check, loss_best_at_check = 0, loss_best.clone()
        reduced_at_check = torch.ones(n, dtype=torch.bool, device=x.device)
        for i in range(self.steps):
            # The first step has no momentum (a = 1), as in the reference implementation.
            a = self.momentum if i > 0 else 1.0
            z = threat.project(x_adv + step.view(shape) * threat.steepest_direction(grad), x)
            x_new = threat.project(x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev), x)
            x_prev, x_adv = x_adv, x_new
            grad, logits, loss = input_grad(model, x_adv, y, self._loss, loss_target)
            best.update(idx, x_adv, loss, fooled(logits, y, success_target))
            increases += (loss > loss_prev).to(increases.dtype)
            loss_prev = loss
            improved = loss > loss_best
            x_max[improved], grad_max[improved], loss_best[improved] = x_adv[improved], grad[improved], loss[improved]
            if i + 1 in checkpoints:
                window = i + 1 - last_check
                oscillating = increases <= window * self.rho
                stalled = ~reduced_at_check & (loss_best_at_check >= loss_best)
                reduce = oscillating | stalled
                reduced_at_check = reduce
                loss_best_at_check = loss_best.clone()
                step[reduce] /= 2.0
                x_adv[reduce], grad[reduce] = x_max[reduce], grad_max[reduce]
                increases.zero_()
                last_check = i + 1
            alive = ~best.done[idx]
            if not bool(alive.all()):
                # Fooled samples leave the batch: each sample's step size and momentum are its own,
                # so this changes nothing for the others and saves their forward/backward passes.
                if not bool(alive.any()):
                    return
                x, y, idx, step = x[alive], y[alive], idx[alive], step[alive]
                loss_target = None if loss_target is None else loss_target[alive]
                success_target = None if success_target is None else success_target[alive]
                x_adv, x_prev, grad, x_max, grad_max = (t[alive] for t in (x_adv, x_prev, grad, x_max, grad_max))
                loss_best, increases, loss_prev, loss_best_at_check, reduced_at_check = (
                    t[alive] for t in (loss_best, increases, loss_prev, loss_best_at_check, reduced_at_check))


@register_attack("apgd-ce")
class APGDCE(_APGD):
    """Step-size-free PGD on cross-entropy (Croce & Hein 2020), AutoAttack's first attack."""

    loss_name = "ce"


@register_attack("apgd-dlr")
class APGDDLR(_APGD):
    """Step-size-free PGD on the scale-invariant DLR loss; targeted=True is AutoAttack's APGD-T."""

    loss_name = "dlr"
