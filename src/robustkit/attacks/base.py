"""The Attack base class: it owns the invariants every attack must keep, once.

An attack is ``attack(model, x, y, *, target=None) -> x_adv``. The base class checks the inputs,
puts the model in the mode the attack wants (eval by default) and restores every module's mode
afterwards, and projects the result into the threat model. Subclasses implement ``_perturb`` and
nothing else. Gradients are taken with ``torch.autograd.grad`` with respect to the input only, so
parameter ``.grad`` fields are never touched.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_choice, check_inputs, check_labels, check_number
from ..threat import ThreatModel

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def in_mode(model, mode: str = "eval") -> Iterator[None]:
    """Run a block with ``model`` in eval mode ("eval") or as it is ("keep"), then give every module
    back its own training flag. ``model.train(was)`` would not do: it overwrites a mixed-mode model
    (e.g. frozen batch-norm in a training model) with one flag."""
    modules = list(model.modules()) if isinstance(model, nn.Module) else []
    modes = [m.training for m in modules]
    if mode == "eval" and modules:
        model.eval()
    try:
        yield
    finally:
        for m, was in zip(modules, modes):
            m.training = was


@contextmanager
def channels_last(model) -> Iterator[bool]:
    """Run a block with the 4-d weights of ``model`` in channels-last layout, then give them back their own.

    oneDNN's CPU convolutions with stride 1 are faster on channels-last tensors (Square on the Fashion-MNIST
    small-cnn: 1.4x); a net of strided convolutions only (the MNIST wong-cnn) was slower, so it keeps its
    layout. The rule looks at the architecture, never at a timing, so a seeded audit makes the same choice
    (and the same float rounding) on every run. The arithmetic is the same fp32. Yields whether the layout
    was switched; the weights are converted in place, not copied, so a large model costs no memory."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)] if isinstance(model, nn.Module) else []
    if not any(tuple(c.stride) == (1, 1) and max(c.kernel_size) > 1 for c in convs):
        yield False
        return
    params = [p for p in model.parameters() if p.dim() == 4]
    formats = [p.data for p in params]
    try:
        for p in params:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
        yield True
    finally:
        for p, old in zip(params, formats):
            p.data = old


class _ChannelsLastInput:
    """Feeds a model its inputs in channels-last layout (the gradient flows back to the caller's layout)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def check_flag(value, name: str, owner: str) -> bool:
    """Booleans only: ``bool("false")`` is True, so a string from a config would silently flip a switch."""
    if not isinstance(value, bool):
        raise TypeError(f"The '{name}' parameter of {owner} must be True or False. Got {value!r} instead.")
    return value


def attack_params(attack) -> dict:
    """The full configuration of any attack (keyword-only constructor arguments + threat) for reports."""
    threat = getattr(attack, "threat", None)
    out = {"attack": attack.name, "threat": threat.to_dict() if threat is not None else None}
    for cls in type(attack).__mro__:
        if cls is object:
            continue
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.kind == p.KEYWORD_ONLY and p.name not in out and hasattr(attack, p.name):
                out[p.name] = getattr(attack, p.name)
    return out


class _CheckedModel:
    """Calls the model and validates its output once (logit shape, labels inside its classes).

    Checking at the attack's first forward pass costs nothing extra: a separate clean pass would
    add a third of a step to single-step attacks used in training.
    """

    def __init__(self, model: nn.Module, y: torch.Tensor, target: torch.Tensor | None, owner: str):
        self.model, self.y, self.target, self.owner = model, y, target, owner
        self.checked = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if not self.checked:
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(f"The 'model' parameter of {self.owner} must return logits of shape (N, classes) "
                                 f"for a batch of N={x.shape[0]}. Got {shape} instead.")
            check_labels(self.y, logits.shape[1], "y", self.owner)
            if self.target is not None:
                check_labels(self.target, logits.shape[1], "target", self.owner)
            self.checked = True
        return logits


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j per sample (negative means misclassified)."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return z_y - other.amax(1)


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference-of-logits-ratio loss (Croce & Hein 2020), per sample; larger is more adversarial.

    Untargeted: -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3). Targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2).
    It is invariant to shifting and rescaling the logits, which defeats saturated-logit gradient masking.

    The denominators need the 3rd (untargeted) or 4th (targeted) largest logit. With fewer classes
    (binary and 3-class models, where the original AutoAttack fails) the loss is the plain logit margin,
    -(z_y - max_{j!=y} z_j) or z_t - z_y: the DLR numerator without its normalisation (any normalisation
    by the two logits a binary model has would make the loss constant, with zero gradient).
    """
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    needed = 3 if target is None else 4
    if logits.shape[1] < needed:
        return -margin(logits, y) if target is None else logits.gather(1, target[:, None]).squeeze(1) - z_y
    srt = logits.sort(dim=1, descending=True).values
    if target is None:
        return -margin(logits, y) / (srt[:, 0] - srt[:, 2] + 1e-12)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


def ce_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample loss to ascend: CE of the true class, or minus CE of the target class."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"ce": ce_loss, "dlr": dlr_loss,
                                                  "margin": lambda z, y, t=None: -margin(z, y) if t is None
                                                  else (z.gather(1, t[:, None]) - z.gather(1, y[:, None])).squeeze(1)}


def input_grad(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               loss: Callable[..., torch.Tensor], target: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gradient of the summed per-sample loss w.r.t. x, logits, per-sample loss), all detached."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    per_sample = loss(logits, y, target)
    (grad,) = torch.autograd.grad(per_sample.sum(), x)
    return grad.detach(), logits.detach(), per_sample.detach()


def fooled(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Success per sample: misclassified (untargeted) or classified as the target (targeted)."""
    pred = logits.argmax(1)
    return pred != y if target is None else pred == target


class Attack:
    """Base class. Subclasses set ``name`` (via ``@register_attack``) and implement ``_perturb``.

    Keyword arguments common to all attacks:
      seed: seeds the attack's own ``torch.Generator``; the same seed gives the same result.
      model_mode: "eval" (default: batch-norm/dropout frozen while attacking) or "keep" (attack the
        model in whatever mode it is in; training objectives use this when a method wants it).
    """

    name: ClassVar[str] = "attack"
    kind: ClassVar[str] = "white-box"  # "white-box" (uses gradients) | "black-box" (only predictions) | "discrete"
    modality: ClassVar[str] = "vision"  # what ``x`` is: "vision" tensors here, "text" for DiscreteAttack
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")  # the threat norms the attack is defined for
    #: run conv models in channels-last layout while attacking (``channels_last``); set where it was measured
    #: faster: forward-only attacks. (Forward + backward on the MNIST CNN was slower: white-box attacks keep
    #: the default layout.)
    fast_layout: ClassVar[bool] = False

    def __init__(self, threat: ThreatModel, *, seed: int = 0, model_mode: str = "eval"):
        if not isinstance(threat, ThreatModel):
            raise TypeError(f"The 'threat' parameter of {self.name} must be a robustkit.ThreatModel, e.g. "
                            f"ThreatModel('linf', 8/255); {self.modality} attacks need one. Got {threat!r} instead.")
        if threat.norm not in self.norms:
            raise ValueError(f"The 'threat' parameter of {self.name} must use the {' or '.join(self.norms)} norm: "
                             f"{self.name} is defined for it only (under another norm its result would merely be "
                             f"clipped into that ball). Got norm={threat.norm!r} instead; use --norm "
                             f"{self.norms[0]}, or an attack for {threat.norm} (pgd, apgd-ce).")
        self.threat = threat
        self.seed = check_number(seed, "seed", owner=self.name, low=0, integer=True)
        self.model_mode = check_choice(model_mode, "model_mode", ("eval", "keep"), owner=self.name)

    # -- reporting ------------------------------------------------------------------------------
    def params(self) -> dict:
        """The full configuration (constructor arguments + threat model) for reports and provenance."""
        return attack_params(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if k != "attack")
        return f"{type(self).__name__}({args})"

    # -- the call -------------------------------------------------------------------------------
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 target: torch.Tensor | None = None) -> torch.Tensor:
        if not callable(model):
            raise TypeError(f"The 'model' parameter of {self.name} must be a callable nn.Module. "
                            f"Got {type(model).__name__} instead.")
        if self.kind == "white-box" and getattr(model, "robustkit_differentiable", True) is False:
            raise ValueError(f"The 'model' parameter of {self.name} must give input gradients: {self.name} is a "
                             f"white-box (gradient) attack, but {type(model).__name__} is marked non-differentiable "
                             "(robustkit_differentiable=False, e.g. an ONNX model run by onnxruntime). Use a "
                             "black-box attack (--attack square) or transfer from a differentiable surrogate "
                             "(--surrogate MODEL).")
        check_inputs(x, y, bounds=self.threat.bounds, owner=self.name)
        y = y.long()
        if target is not None:
            check_inputs(x, target, owner=self.name)
            target = target.long()
        generator = torch.Generator(device=x.device)
        generator.manual_seed(self.seed)
        with in_mode(model, self.model_mode), torch.enable_grad(), \
                channels_last(model if self.fast_layout and x.dim() == 4 else None) as switched:
            checked = _CheckedModel(_ChannelsLastInput(model) if switched else model, y, target, self.name)
            x_adv = self._perturb(checked, x.detach(), y, target, generator)
        # The invariant, enforced once: same shape and dtype, inside the ball and the bounds.
        return self.threat.project(x_adv.detach(), x.detach()).to(x.dtype)

    def _perturb(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 target: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class BestTracker:
    """Keeps, per sample, the first successful adversarial example or else the highest-loss one.

    Used for restarts and early stopping: a sample that is already fooled never needs more work,
    and evaluation counts worst cases per sample (DESIGN decision 5).
    """

    def __init__(self, x: torch.Tensor):
        self.x_best = x.clone()
        self.loss_best = torch.full((x.shape[0],), float("-inf"), device=x.device, dtype=x.dtype)
        self.done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def update(self, idx: torch.Tensor, x_cand: torch.Tensor, loss: torch.Tensor, success: torch.Tensor) -> None:
        """Record candidates for samples ``idx`` (global indices)."""
        not_done = ~self.done[idx]
        better = not_done & (success | (loss > self.loss_best[idx]))
        sel = idx[better]
        self.x_best[sel] = x_cand[better]
        self.loss_best[sel] = loss[better].to(self.loss_best.dtype)
        self.done[idx[not_done & success]] = True

    def active(self) -> torch.Tensor:
        return (~self.done).nonzero().squeeze(1)
