"""``clean_loss + lam * adv_loss`` with any registered attack, and the base of FGSM/Fast/PGD training."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ... import attacks
from ..._validation import check_number
from .base import AdversarialObjective, _acc, crafting_model, register_objective


class _Mixed(AdversarialObjective):
    """``clean_loss + lam * adv_loss`` (or ``adv_loss`` alone with ``adv_only``)."""

    def __init__(self, threat, *, lam: float = 1.0, adv_only: bool = False, **kw):
        super().__init__(threat, **kw)
        self.lam = check_number(lam, "lam", owner=self.name, low=0)
        self.adv_only = bool(adv_only)

    def loss_from(self, model, x, x_adv, y):
        if self.adv_only:
            logits_adv = model(x_adv)
            loss = F.cross_entropy(logits_adv, y)
            return loss, {"adv_acc": _acc(logits_adv, y)}
        # One forward over the concatenated batch: cheaper than two, and BN sees both halves.
        logits = model(torch.cat([x, x_adv]))
        logits_clean, logits_adv = logits[: x.shape[0]], logits[x.shape[0]:]
        loss = F.cross_entropy(logits_clean, y) + self.lam * F.cross_entropy(logits_adv, y)
        return loss, {"clean_acc": _acc(logits_clean, y), "adv_acc": _acc(logits_adv, y)}


@register_objective("mixed")
class MixedTraining(_Mixed):
    """``clean_loss + lam * adv_loss`` with any registered attack (``attack`` name + ``attack_params``)."""

    def __init__(self, threat, *, attack: str = "pgd", attack_params: dict | None = None, **kw):
        super().__init__(threat, **kw)
        attacks.get_class(attack)  # unknown names fail now, not mid-training
        self.attack = attack
        self.attack_params = dict(attack_params or {})
        if attack == "pgd":
            self.attack_params.setdefault("early_stop", False)

    def craft(self, model, x, y, eps):
        return self._attack(self.attack, eps, **self.attack_params)(crafting_model(model), x, y)
