"""Transfer — craft adversarial examples on a surrogate model, evaluate them on the target.

Papernot, McDaniel & Goodfellow, "Transferability in Machine Learning: from Phenomena to Black-Box
Attacks using Adversarial Samples" (2016); Tramèr et al., "Ensemble Adversarial Training" (ICLR 2018).
The target model is only queried for its predictions (to keep, per sample, the first candidate
that fools it), never differentiated, so it audits models whose gradients are masked, quantized
or missing. With ``restarts`` > 1 the inner attack is rerun with new seeds on samples the
previous candidates did not transfer to.

Arguments: ``surrogate`` (an nn.Module taking the same inputs; required), ``attack`` (the name of
any registered attack, "pgd" by default), ``attack_params`` (dict of its keyword arguments; the
default is PGD-50 on the margin loss, which transfers better than CE), ``restarts`` (1).

Shapes: x (N, ...) in the threat's bounds, y (N,) -> x_adv like x. Targeted with ``target=``.
Example: ``create("transfer", ThreatModel("linf", 0.1), surrogate=twin, attack="apgd-ce")(model, x, y)``
"""
from __future__ import annotations

import torch
from torch import nn

from .._validation import check_number
from .base import Attack, fooled
from .registry import available, create, get_class, register_attack


@register_attack("transfer")
class Transfer(Attack):
    """Craft on a surrogate model, keep what fools the target (Papernot et al. 2016)."""

    kind = "black-box"  # the target is only queried for predictions

    def __init__(self, threat, *, surrogate: nn.Module | None = None, attack: str = "pgd",
                 attack_params: dict | None = None, restarts: int = 1, **kw):
        super().__init__(threat, **kw)
        if surrogate is None or not callable(surrogate):
            raise TypeError("The 'surrogate' parameter of transfer must be a model (nn.Module) to craft the "
                            f"examples on. Got {type(surrogate).__name__} instead.")
        if attack == "transfer":
            raise ValueError("The 'attack' parameter of transfer must be a white-box attack name, not 'transfer'.")
        if get_class(attack).modality != self.modality:  # unknown names fail here, with suggestions
            raise ValueError(f"The 'attack' parameter of transfer must be a {self.modality} attack, one of "
                             f"{available(modality=self.modality)}. Got {attack!r} instead.")
        if attack_params is not None and not isinstance(attack_params, dict):
            raise TypeError("The 'attack_params' parameter of transfer must be a dict of the inner attack's "
                            f"keyword arguments. Got {type(attack_params).__name__} instead.")
        self.surrogate = surrogate
        self.attack = attack
        default = {"steps": 50, "loss": "margin"} if attack == "pgd" else {}
        self.attack_params = dict(default if attack_params is None else attack_params)
        self.restarts = check_number(restarts, "restarts", owner="transfer", low=1, integer=True)
        create(attack, threat, seed=self.seed, **self.attack_params)  # validate the inner config now

    def params(self) -> dict:
        out = super().params()
        s = self.surrogate
        n_params = sum(p.numel() for p in s.parameters()) if isinstance(s, nn.Module) else None
        out["surrogate"] = {"class": type(s).__name__, "parameters": n_params,
                            "spec": getattr(s, "robustkit_spec", None)}
        return out

    @torch.no_grad()
    def _perturb(self, model, x, y, target, generator):
        out = x.clone()
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for r in range(self.restarts):
            idx = (~done).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            inner = create(self.attack, self.threat, seed=self.seed + r, **self.attack_params)
            t = None if target is None else target[idx]
            cand = inner(self.surrogate, x[idx], y[idx], target=t)
            ok = fooled(model(cand), y[idx], t)
            # The first restart's candidate is kept even when it fails: it is still a valid point.
            keep = ok | torch.tensor(r == 0, device=x.device)
            out[idx[keep]] = cand[keep]
            done[idx[ok]] = True
        return out
