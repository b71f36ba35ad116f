"""Adversarial Weight Perturbation (Wu, Xia & Wang, NeurIPS 2020)."""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..._validation import check_choice, check_number
from .base import Objective, create_objective, crafting_model, register_objective

_EPS = 1e-20


@register_objective("awp")
class AWP(Objective):
    """AWP (Wu, Xia & Wang 2020, "Adversarial Weight Perturbation Helps Robust Generalization"):
    adversarial training whose loss is taken at adversarially perturbed weights ``w + v``.

    Per batch, in :meth:`before_step` (weights ``w``):

    1. ``x_adv`` is crafted by the inner objective (``inner``: ``"pgd"`` or ``"trades"``, with
       ``inner_args``) at the unperturbed weights;
    2. ``g`` = gradient of the inner objective's loss on ``(x, x_adv, y)`` with respect to the
       weights, one ascent step, normalised layer by layer: ``v_l = gamma · ||w_l|| · g_l / ||g_l||``
       for every parameter with more than one dimension (weights; biases and norm parameters are
       not perturbed); ``v`` is added to the weights.

    :meth:`__call__` returns the inner loss at ``w + v`` (the trainer backpropagates it) and
    :meth:`after_step` subtracts ``v`` again before the optimizer applies that gradient to ``w``.
    No perturbation during the first ``warmup_batches`` batches. Called without ``before_step``
    (e.g. directly), it is the inner objective.

    Differences from the reference code: the ascent gradient comes from ``torch.autograd.grad`` with
    ``torch.func.functional_call`` on cloned buffers (no proxy model copy; batch-norm running
    statistics untouched, as with the reference's proxy); weights are restored before the
    optimizer step rather than after, so weight decay sees ``w`` instead of ``w + v``; the warm-up
    counts batches, not epochs.

    ``gamma`` (default 0.005) is the relative size of the weight perturbation per layer.
    """

    def __init__(self, threat, *, inner: str = "pgd", inner_args: dict | None = None, gamma: float = 0.005,
                 warmup_batches: int = 0, **kw):
        super().__init__(threat, **kw)
        self.inner = check_choice(inner, "inner", ("pgd", "trades"), owner="awp")
        self.inner_args = dict(inner_args or {})
        self.gamma = check_number(gamma, "gamma", owner="awp", low=0)
        self.warmup_batches = check_number(warmup_batches, "warmup_batches", owner="awp", low=0, integer=True)
        # The inner objective draws the per-batch seeds, so AWP's x_adv equals plain PGD-AT's/TRADES'.
        self._inner = create_objective(inner, threat, **{"attack_mode": self.attack_mode, "seed": self.seed,
                                                         **self.inner_args})
        self._batches = 0
        self._stash: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, x_adv) of the current batch
        self._v: list[tuple[nn.Parameter, torch.Tensor]] = []

    def before_step(self, model, x, y, *, eps=None):
        bare = crafting_model(model)
        x_adv = self._inner.craft(bare, x, y, eps)
        self._stash = (x, x_adv)
        self._batches += 1
        if self._batches > self.warmup_batches and self.gamma > 0:
            self._v = self._weight_perturbation(bare, x, x_adv, y)
            with torch.no_grad():
                for p, v in self._v:
                    p.add_(v)

    def _weight_perturbation(self, bare: nn.Module, x, x_adv, y) -> list[tuple[nn.Parameter, torch.Tensor]]:
        weights = {n: p for n, p in bare.named_parameters() if p.requires_grad and p.dim() > 1}
        if not weights:
            return []
        # Cloned buffers: this extra pass must not move batch-norm running statistics.
        state = {**dict(bare.named_parameters()), **{n: b.clone() for n, b in bare.named_buffers()}}

        def forward(inp):
            return functional_call(bare, state, (inp,))

        loss, _ = self._inner.loss_from(forward, x, x_adv, y)
        # autograd.grad, not backward(): no .grad is left behind for the optimizer to see.
        grads = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
        return [(p, self.gamma * p.detach().norm() * g / (g.norm() + _EPS))
                for p, g in zip(weights.values(), grads) if g is not None]

    def __call__(self, model, x, y, *, eps=None):
        stash, self._stash = self._stash, None
        # Only a stash made for this very batch counts; otherwise craft here (no weight perturbation).
        x_adv = stash[1] if stash is not None and stash[0] is x else self._inner.craft(model, x, y, eps)
        return self._inner.loss_from(model, x, x_adv, y)

    def after_step(self, model):
        with torch.no_grad():
            for p, v in self._v:
                p.sub_(v)
        self._v = []
        self._stash = None

    def state(self):
        return {**super().state(), "batches": self._batches, "inner": self._inner.state()}

    def load_state(self, state):
        super().load_state(state)
        self._batches = int(state.get("batches", 0))
        self._inner.load_state(state.get("inner", {}))
