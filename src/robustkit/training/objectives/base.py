"""The Objective base class and the registry every training method plugs into (DESIGN decision 4).

An objective maps ``(model, x, y) -> (loss, stats)``; the trainer is one generic loop. What used to
be method names in the trainer are class attributes here, so a new objective needs no core change.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ... import attacks
from ..._validation import check_number, check_choice, unknown_name_error
from ...threat import ThreatModel

Stats = dict[str, float]
_OBJECTIVES: dict[str, type["Objective"]] = {}


def register_objective(name: str):
    """Class decorator: ``@register_objective("pgd")`` adds the class to the registry under ``name``."""
    def decorate(cls):
        if name in _OBJECTIVES:
            raise ValueError(f"A training objective named {name!r} is already registered "
                             f"({_OBJECTIVES[name].__module__}.{_OBJECTIVES[name].__qualname__}).")
        if not isinstance(cls.modalities, tuple) or not cls.modalities:
            raise ValueError(f"Objective {name!r} must declare the modalities it trains on as a non-empty "
                             f"tuple, e.g. ('vision',). Got {cls.modalities!r} instead.")
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls
    return decorate


def available_objectives() -> list[str]:
    return sorted(_OBJECTIVES)


def get_objective_class(name: str) -> type["Objective"]:
    if name not in _OBJECTIVES:
        # A ValueError (not KeyError): an unknown name is a bad value, and KeyError quotes its message.
        raise ValueError(unknown_name_error("training method", name, _OBJECTIVES).args[0])
    return _OBJECTIVES[name]


def create_objective(name: str, threat: ThreatModel | None = None, **params) -> "Objective":
    return get_objective_class(name)(threat, **params)


def optional_step_size(value, owner: str) -> float | None:
    """``step_size`` is None (the objective's rule, e.g. 2.5·eps/steps) or a number > 0."""
    return None if value is None else check_number(value, "step_size", owner=owner, low=0, low_inclusive=False)


def crafting_model(model: nn.Module) -> nn.Module:
    """Craft on the bare module under DistributedDataParallel: an attack's forward/backward passes
    must not enter DDP's gradient-synchronization bookkeeping; only the training loss does."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean())


class Objective:
    """Base class of training objectives: ``__call__(model, x, y, *, eps=None) -> (loss, stats)``.

    ``eps`` overrides the threat's radius for this batch (epsilon warm-up). ``model`` is the module
    that trains (possibly the DDP wrapper); craft adversarial examples on :func:`crafting_model`.

    Per batch the trainer calls, in this order and inside the same autocast context::

        objective.before_step(bare_model, x, y, eps=eps)   # no-op by default
        loss, stats = objective(train_model, x, y, eps=eps)
        loss.backward()
        objective.after_step(bare_model)                    # no-op by default
        ... optimizer step (every ``accumulate`` batches)

    ``after_step`` runs before any optimizer update, so a hook that moved the weights in
    ``before_step`` (AWP) can put them back before the optimizer applies the gradient.

    Mode policy: the trainer calls an objective with the model in train mode. Adversarial
    examples are crafted with ``model_mode="eval"`` by default, so the inner maximization sees frozen
    batch-norm statistics and no dropout noise and never pollutes the running statistics;
    ``attack_mode="train"`` crafts in train mode instead (Wong et al.'s Fast-AT reference does that).
    The outer loss is always computed in train mode.

    Declared attributes (read by the trainer and the run builders instead of method names):

    - ``needs_threat``: a :class:`~robustkit.ThreatModel` is required.
    - ``modalities``: the inputs it trains on, e.g. ``("vision",)``, ``("text",)``.
    - ``single_step``: single-step adversarial training (FGSM-like): the catastrophic-overfitting
      guard and the FGSM validation metric apply.
    - ``select_best_by``: ``"robust"`` or ``"clean"``, the validation metric that picks the best
      checkpoint when the config says ``select_best_by="auto"``.
    - ``needs_raw_inputs``: batches must carry the raw inputs (e.g. texts under ``"texts"``).
    """

    name: ClassVar[str] = "objective"
    needs_threat: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = ("vision",)
    single_step: ClassVar[bool] = False
    select_best_by: ClassVar[str] = "robust"
    needs_raw_inputs: ClassVar[bool] = False

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

    def _next_seed(self) -> int:
        # A fresh seed per batch: the same run reproduces, yet batches do not share random starts.
        self._calls += 1
        return self.seed * 1_000_003 + self._calls

    def _attack(self, name: str, eps: float | None, **params) -> attacks.Attack:
        mode = "eval" if self.attack_mode == "eval" else "keep"
        return attacks.create(name, self._threat(eps), seed=self._next_seed(), model_mode=mode, **params)

    def state(self) -> dict[str, Any]:
        """What resume needs: the batch counter (seeds) and a step size the CO guard may have lowered."""
        return {"calls": self._calls, "step_size": getattr(self, "step_size", None)}

    def load_state(self, state: dict[str, Any]) -> None:
        self._calls = int(state.get("calls", 0))
        if state.get("step_size") is not None and hasattr(self, "step_size"):
            self.step_size = state["step_size"]

    def before_step(self, model: nn.Module, x: Any, y: torch.Tensor, *, eps: float | None = None) -> None:
        """Called with the bare model before this batch's forward. No-op by default."""

    def after_step(self, model: nn.Module) -> None:
        """Called with the bare model after this batch's ``backward()``, before any optimizer update."""

    def __call__(self, model: nn.Module, x: Any, y: torch.Tensor, *, eps: float | None = None
                 ) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError


class AdversarialObjective(Objective):
    """An objective that crafts ``x_adv`` and then scores the batch: ``loss_from(model, x, craft(...), y)``.

    The split lets a wrapper (AWP) craft once and evaluate the same loss at other weights.
    """

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None) -> torch.Tensor:
        raise NotImplementedError

    def loss_from(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor
                  ) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError

    def __call__(self, model, x, y, *, eps=None):
        return self.loss_from(model, x, self.craft(model, x, y, eps), y)
