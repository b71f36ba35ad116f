"""Training objectives: each maps (model, x, y) -> (loss, stats). The trainer is one generic loop.

Mode policy (documented per objective, DESIGN decision 4): the trainer calls an objective with the
model in train mode. Adversarial examples are crafted with ``model_mode="eval"`` by default, so the
inner maximization sees frozen batch-norm statistics and no dropout noise and never pollutes the
running statistics; ``attack_mode="train"`` crafts in train mode instead (Wong et al.'s Fast-AT
reference does that). The outer loss is always computed in train mode.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import attacks
from .._validation import check_choice, check_number, unknown_name_error
from ..threat import ThreatModel

Stats = dict[str, float]
_OBJECTIVES: dict[str, type["Objective"]] = {}


def register_objective(name: str):
    def decorate(cls):
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls
    return decorate


def available_objectives() -> list[str]:
    return sorted(_OBJECTIVES)


def create_objective(name: str, threat: ThreatModel | None = None, **params) -> "Objective":
    if name not in _OBJECTIVES:
        raise unknown_name_error("training method", name, _OBJECTIVES)
    return _OBJECTIVES[name](threat, **params)


def crafting_model(model: nn.Module) -> nn.Module:
    """Craft on the bare module under DistributedDataParallel: an attack's forward/backward passes
    must not enter DDP's gradient-synchronization bookkeeping; only the training loss does."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


class Objective:
    """Base class. ``__call__(model, x, y, eps=None) -> (loss, stats)``; ``eps`` overrides the
    threat's radius for this batch (epsilon warm-up)."""

    name: ClassVar[str] = "objective"
    needs_threat: ClassVar[bool] = True

    def __init__(self, threat: ThreatModel | None, *, attack_mode: str = "eval", seed: int = 0):
        if self.needs_threat and not isinstance(threat, ThreatModel):
            raise TypeError(f"The 'threat' parameter of training method {self.name!r} must be a "
                            f"robustkit.ThreatModel. Got {type(threat).__name__} instead.")
        self.threat = threat
        self.attack_mode = check_choice(attack_mode, "attack_mode", ("eval", "train"), owner=self.name)
        self.seed = seed
        self._calls = 0

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "threat"}

    def _threat(self, eps: float | None) -> ThreatModel:
        return self.threat if eps is None else self.threat.with_eps(eps)

    def _attack(self, name: str, eps: float | None, **params) -> attacks.Attack:
        # A fresh seed per batch: the same run reproduces, yet batches do not share random starts.
        self._calls += 1
        mode = "eval" if self.attack_mode == "eval" else "keep"
        return attacks.create(name, self._threat(eps), seed=self.seed * 1_000_003 + self._calls, model_mode=mode,
                              **params)

    def state(self) -> dict[str, Any]:
        """What resume needs: the batch counter (seeds) and a step size the CO guard may have lowered."""
        return {"calls": self._calls, "step_size": getattr(self, "step_size", None)}

    def load_state(self, state: dict[str, Any]) -> None:
        self._calls = int(state.get("calls", 0))
        if state.get("step_size") is not None and hasattr(self, "step_size"):
            self.step_size = state["step_size"]

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float | None = None
                 ) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError


class _Mixed(Objective):
    """``clean_loss + lam * adv_loss`` (or ``adv_loss`` alone with ``adv_only``)."""

    def __init__(self, threat, *, lam: float = 1.0, adv_only: bool = False, **kw):
        super().__init__(threat, **kw)
        self.lam = check_number(lam, "lam", owner=self.name, low=0)
        self.adv_only = bool(adv_only)

    def _craft(self, model, x, y, eps) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model, x, y, *, eps=None):
        x_adv = self._craft(model, x, y, eps)
        if self.adv_only:
            logits_adv = model(x_adv)
            loss = F.cross_entropy(logits_adv, y)
            return loss, {"adv_acc": _acc(logits_adv, y)}
        # One forward over the concatenated batch: cheaper than two, and BN sees both halves.
        logits = model(torch.cat([x, x_adv]))
        logits_clean, logits_adv = logits[: x.shape[0]], logits[x.shape[0]:]
        loss = F.cross_entropy(logits_clean, y) + self.lam * F.cross_entropy(logits_adv, y)
        return loss, {"clean_acc": _acc(logits_clean, y), "adv_acc": _acc(logits_adv, y)}


@register_objective("standard")
class Standard(Objective):
    """Plain cross-entropy: the baseline (no threat model needed)."""

    needs_threat = False

    def __call__(self, model, x, y, *, eps=None):
        logits = model(x)
        return F.cross_entropy(logits, y), {"clean_acc": _acc(logits, y)}


@register_objective("fgsm")
class FGSMTraining(_Mixed):
    """FGSM-AT (Goodfellow et al. 2015): ``clean + lam * adv`` with single-step FGSM from the clean point.

    ``step_size`` defaults to eps. Crafted in eval mode by default. Prone to catastrophic
    overfitting at large eps; the trainer's guard watches for it. ``clip_start=False`` takes the
    gradient at the unclipped random start (see :class:`robustkit.attacks.fgsm.FGSM`).
    """

    def __init__(self, threat, *, step_size: float | None = None, random_start: bool = False,
                 clip_start: bool = True, **kw):
        super().__init__(threat, **kw)
        self.step_size = step_size
        self.random_start = bool(random_start)
        self.clip_start = bool(clip_start)

    def _craft(self, model, x, y, eps):
        e = self._threat(eps).eps
        step = e if self.step_size is None else self.step_size * (e / self.threat.eps if self.threat.eps else 1)
        return self._attack("fgsm", eps, step_size=step, random_start=self.random_start,
                            clip_start=self.clip_start)(crafting_model(model), x, y)


@register_objective("fast")
class FastTraining(FGSMTraining):
    """Fast-AT (Wong, Rice & Kolter 2020): FGSM from a uniform random start with step 1.25·eps,
    training on the adversarial loss alone (``adv_only`` defaults to True)."""

    def __init__(self, threat, *, step_size: float | None = None, adv_only: bool = True, **kw):
        super().__init__(threat, step_size=(1.25 * threat.eps if step_size is None and threat is not None
                                            else step_size), random_start=True, adv_only=adv_only, **kw)


@register_objective("pgd")
class PGDTraining(_Mixed):
    """PGD-AT (Madry et al. 2018): adversarial loss alone, k-step PGD with a random start.

    ``step_size`` defaults to 2.5·eps/steps. Crafted in eval mode by default (no BN pollution).
    """

    def __init__(self, threat, *, steps: int = 10, step_size: float | None = None, random_start: bool = True,
                 adv_only: bool = True, **kw):
        super().__init__(threat, adv_only=adv_only, **kw)
        self.steps = check_number(steps, "steps", owner="pgd", low=1, integer=True)
        self.step_size = step_size
        self.random_start = bool(random_start)

    def _craft(self, model, x, y, eps):
        e = self._threat(eps).eps
        step = 2.5 * e / self.steps if self.step_size is None else self.step_size * (e / self.threat.eps)
        return self._attack("pgd", eps, steps=self.steps, step_size=step, random_start=self.random_start,
                            early_stop=False)(crafting_model(model), x, y)


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

    def _craft(self, model, x, y, eps):
        return self._attack(self.attack, eps, **self.attack_params)(crafting_model(model), x, y)


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
class TRADES(Objective):
    """TRADES (Zhang et al. 2019): CE(f(x), y) + beta · KL(f(x) || f(x')), x' maximizing the KL.

    Inner maximization in eval mode (as the reference code does), outer loss in train mode.
    """

    def __init__(self, threat, *, beta: float = 6.0, steps: int = 10, step_size: float | None = None, **kw):
        super().__init__(threat, **kw)
        self.beta = check_number(beta, "beta", owner="trades", low=0)
        self.steps = check_number(steps, "steps", owner="trades", low=1, integer=True)
        self.step_size = step_size

    def __call__(self, model, x, y, *, eps=None):
        threat = self._threat(eps)
        step = 2.5 * threat.eps / self.steps if self.step_size is None else self.step_size
        self._calls += 1
        gen = torch.Generator(device=x.device).manual_seed(self.seed * 1_000_003 + self._calls)
        bare = crafting_model(model)
        was_training = bare.training
        if self.attack_mode == "eval":
            bare.eval()
        with torch.no_grad():
            p_clean = F.softmax(bare(x), 1)
        x_adv = _kl_inner_max(bare, x, p_clean, threat, self.steps, step, gen, x.dtype)
        bare.train(was_training)
        logits = model(torch.cat([x, x_adv]))
        lc, la = logits[: x.shape[0]], logits[x.shape[0]:]
        kl = F.kl_div(F.log_softmax(la, 1), F.softmax(lc, 1), reduction="batchmean")
        loss = F.cross_entropy(lc, y) + self.beta * kl
        return loss, {"clean_acc": _acc(lc, y), "adv_acc": _acc(la, y)}


@register_objective("mart")
class MART(Objective):
    """MART (Wang et al. 2020): BCE(p(x'), y) + beta · KL(p(x) || p(x')) · (1 - p_y(x)).

    BCE = -log p_y(x') - log(1 - max_{k != y} p_k(x')) boosts the margin on misclassified examples.
    x' by PGD on cross-entropy, crafted in eval mode.
    """

    def __init__(self, threat, *, beta: float = 6.0, steps: int = 10, step_size: float | None = None, **kw):
        super().__init__(threat, **kw)
        self.beta = check_number(beta, "beta", owner="mart", low=0)
        self.steps = check_number(steps, "steps", owner="mart", low=1, integer=True)
        self.step_size = step_size

    def __call__(self, model, x, y, *, eps=None):
        e = self._threat(eps).eps
        step = 2.5 * e / self.steps if self.step_size is None else self.step_size
        x_adv = self._attack("pgd", eps, steps=self.steps, step_size=step, early_stop=False)(crafting_model(model), x, y)
        logits = model(torch.cat([x, x_adv]))
        lc, la = logits[: x.shape[0]], logits[x.shape[0]:]
        p_adv, p_clean = F.softmax(la, 1), F.softmax(lc, 1)
        others = p_adv.clone()
        others.scatter_(1, y[:, None], 0.0)
        bce = F.cross_entropy(la, y) - torch.log(1.0001 - others.amax(1)).mean()
        p_true = p_clean.gather(1, y[:, None]).squeeze(1)
        kl = (F.kl_div(torch.log(p_adv + 1e-12), p_clean, reduction="none").sum(1) * (1 - p_true)).mean()
        return bce + self.beta * kl, {"clean_acc": _acc(lc, y), "adv_acc": _acc(la, y)}
