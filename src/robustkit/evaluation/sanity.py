"""Sanity checks: the preflight contract check and the gradient-masking checks, one function each.

Each check returns ``{"name", "status": "pass"|"warn"|"fail", "message", "evidence"}``. The
preflight catches users' most common robustness bugs before any attack runs (normalization outside
the model, softmax outputs, train-mode batch-norm, randomized forwards, missing gradients). The
gradient-masking checks follow Athalye, Carlini & Wagner (ICML 2018) and Carlini et al., "On
Evaluating Adversarial Robustness" (2019): a defence whose numbers fail them is not robust, its
gradients are.

Checks live in a registry, each declaring its stage and the modalities it applies to; adding one
is a function and a decorator::

    @register_check("my_check", stage="masking", modalities=("vision", "text"))
    def my_check(ctx: CheckContext) -> dict:
        return make_check("my_check", "pass", "Nothing odd.")

Example::

    checks = preflight(model, x, y, bounds=(0, 1))
    checks += gradient_masking_checks(model, x, y, ThreatModel("linf", 0.1), result=res, sweep=sw)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .. import attacks as attack_registry
from .._validation import check_number, unknown_name_error
from ..modality import Modality, for_inputs
from ._common import eval_mode, gradient_health

STAGES = ("preflight", "masking")
ORDER = {"pass": 0, "warn": 1, "fail": 2}


def make_check(name: str, status: str, message: str, **evidence) -> dict:
    return {"name": name, "status": status, "message": message, "evidence": evidence}


_check = make_check


def worst_status(checks: list[dict]) -> str:
    return max((c["status"] for c in checks), key=ORDER.__getitem__, default="pass")


@dataclass
class CheckContext:
    """What a check may look at. ``x``/``y`` are the samples it runs on (for masking checks: clean-correct
    ones); ``result`` and ``sweep`` are the audit's own, reused when given; ``memo`` shares work between
    checks (e.g. one PGD-10 run for two checks)."""

    model: Any
    x: Any
    y: torch.Tensor
    modality: Modality
    threat: Any = None
    bounds: tuple | None = None
    batch_size: int = 256
    seed: int = 0
    result: Any = None
    sweep: dict | None = None
    memo: dict = field(default_factory=dict)

    def cached(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = fn()
        return self.memo[key]

    def attack(self, name: str, threat=None, **params):
        return attack_registry.create(name, threat if threat is not None else self.threat, seed=self.seed, **params)

    def accuracy(self, attack) -> float:
        """Accuracy of the model on ``attack``'s examples for this context's samples."""
        m, bs = self.modality, self.batch_size
        n = m.size(self.x)
        correct = 0
        for i in range(0, n, bs):
            idx = torch.arange(i, min(i + bs, n))
            yb = self.y[idx.to(self.y.device)]
            xa = attack(self.model, m.take(self.x, idx), yb)
            correct += int((m.logits(self.model, xa, bs).argmax(1) == yb.cpu()).sum())
        return correct / max(1, n)


@dataclass(frozen=True)
class CheckSpec:
    name: str
    fn: Callable[[CheckContext], dict]
    stage: str
    modalities: tuple


_CHECKS: dict[str, CheckSpec] = {}


def register_check(name: str, *, stage: str = "masking", modalities: tuple = ("vision",)):
    """Register ``fn(ctx) -> check dict`` to run in the ``stage`` ("preflight" | "masking") of audits of
    the given modalities, in registration order."""
    if stage not in STAGES:
        raise ValueError(f"The 'stage' parameter of register_check must be one of {list(STAGES)}. Got {stage!r} "
                         "instead.")

    def decorate(fn):
        _CHECKS[name] = CheckSpec(name, fn, stage, tuple(modalities))
        return fn
    return decorate


def unregister_check(name: str) -> None:
    _CHECKS.pop(name, None)


def available_checks(stage: str | None = None, modality: str | None = None) -> list[str]:
    return [c.name for c in _CHECKS.values() if stage in (None, c.stage) and modality in (None, *c.modalities)]


def get_check(name: str) -> CheckSpec:
    if name not in _CHECKS:
        raise ValueError(unknown_name_error("sanity check", name, _CHECKS).args[0])
    return _CHECKS[name]


def run_checks(stage: str, ctx: CheckContext) -> list[dict]:
    return [spec.fn(ctx) for spec in _CHECKS.values() if spec.stage == stage and ctx.modality.name in spec.modalities]


# -- preflight -----------------------------------------------------------------------------------
def preflight(model, x, y: torch.Tensor | None = None, *, bounds: tuple[float, float] | None = (0.0, 1.0),
              batch_size: int = 256) -> list[dict]:
    """The contract check run before every audit (and alone as ``robustkit check``)."""
    modality = for_inputs(x)
    modality.check_inputs(x, y, None, "preflight")
    n = min(256, modality.size(x))
    xs = modality.take(x, torch.arange(n))
    ys = None if y is None else y[:n].long()
    ctx = CheckContext(model, xs, ys, modality, bounds=bounds, batch_size=batch_size, memo={"x_full": x})
    return run_checks("preflight", ctx)


@register_check("inputs_in_bounds", stage="preflight", modalities=("vision",))
def inputs_in_bounds(ctx: CheckContext) -> dict:
    x, bounds = ctx.memo["x_full"], ctx.bounds
    lo, hi = float(x.min()), float(x.max())
    if bounds is not None and (lo < bounds[0] - 1e-6 or hi > bounds[1] + 1e-6):
        return make_check("inputs_in_bounds", "fail",
                          f"Inputs span [{lo:.3g}, {hi:.3g}] but the declared bounds are {list(bounds)}. Feed raw "
                          "inputs in their natural range and put normalization inside the model "
                          "(robustkit.models.Normalize); otherwise eps means something else.",
                          min=lo, max=hi, bounds=list(bounds))
    return make_check("inputs_in_bounds", "pass", "Inputs lie inside the declared bounds.", min=lo, max=hi)


@register_check("eval_mode", stage="preflight", modalities=("vision", "text"))
def eval_mode_check(ctx: CheckContext) -> dict:
    modules = list(ctx.model.modules()) if isinstance(ctx.model, nn.Module) else []
    noisy = [type(m).__name__ for m in modules if m.training and isinstance(m, (nn.modules.batchnorm._BatchNorm,
                                                                                 nn.Dropout))]
    if noisy:
        return make_check("eval_mode", "warn",
                          f"{len(noisy)} batch-norm/dropout module(s) are in training mode ({sorted(set(noisy))}). "
                          "Call model.eval() before attacking or evaluating; the audit does so itself.",
                          modules=sorted(set(noisy)), count=len(noisy))
    return make_check("eval_mode", "pass", "No batch-norm/dropout module is in training mode.")


def _two_passes(ctx: CheckContext) -> tuple[torch.Tensor, torch.Tensor]:
    def run():
        with eval_mode(ctx.model):
            return (ctx.modality.logits(ctx.model, ctx.x, ctx.batch_size),
                    ctx.modality.logits(ctx.model, ctx.x, ctx.batch_size))
    return ctx.cached("two_passes", run)


@register_check("returns_logits", stage="preflight", modalities=("vision", "text"))
def returns_logits(ctx: CheckContext) -> dict:
    out1, _ = _two_passes(ctx)
    if bool((out1 >= -1e-6).all()) and bool(((out1.sum(1) - 1).abs() < 1e-3).all()):
        return make_check("returns_logits", "warn",
                          "The model's outputs are non-negative and sum to 1: it returns probabilities. "
                          "Remove the final softmax and return logits; cross-entropy on probabilities "
                          "saturates and masks gradients.", row_sum_mean=float(out1.sum(1).mean()))
    return make_check("returns_logits", "pass", "The model returns logits (rows are not probabilities).",
                      classes=int(out1.shape[1]))


@register_check("deterministic", stage="preflight", modalities=("vision", "text"))
def deterministic(ctx: CheckContext) -> dict:
    out1, out2 = _two_passes(ctx)
    diff = float((out1 - out2).abs().max())
    if diff > 1e-5:
        return make_check("deterministic", "warn",
                          f"Two forward passes in eval mode differ (max |diff| = {diff:.3g}): the model is "
                          "randomized. Attacks need Expectation over Transformation (EOT) against it; "
                          "the numbers in this report do not use EOT.", max_abs_diff=diff)
    return make_check("deterministic", "pass", "Two forward passes in eval mode agree.", max_abs_diff=diff)


@register_check("input_gradients", stage="preflight", modalities=("vision",))
def input_gradients(ctx: CheckContext) -> dict:
    ys = ctx.y if ctx.y is not None else _two_passes(ctx)[0].argmax(1).to(ctx.x.device)
    with eval_mode(ctx.model):
        health = gradient_health(ctx.model, ctx.x, ys, ctx.batch_size)
    verdict = _gradient_verdict(health)
    if verdict["status"] == "fail" and getattr(ctx.model, "robustkit_differentiable", True) is False:
        # Declared (ONNX Runtime, int8 kernels) and handled: the audit crafts on a float twin or a
        # surrogate and transfers, plus black-box attacks; no gradient attack ever runs on it.
        verdict["status"] = "warn"
        verdict["message"] = ("No input gradients, as the model declares (robustkit_differentiable=False): it is "
                              "audited with black-box and transfer attacks only (give --surrogate where it has no "
                              "float twin).")
    return verdict


def _gradient_verdict(health: dict) -> dict:
    bad = health["zero_share"] + health["nonfinite_share"]
    if not health["differentiable"]:
        return _check("input_gradients", "fail",
                      "The model gives no gradient w.r.t. its input (non-differentiable, quantized or computed "
                      "without autograd). White-box attacks cannot run; it is audited with black-box and transfer "
                      "attacks only.", **health)
    if bad >= 0.5:
        return _check("input_gradients", "fail",
                      f"Input gradients are zero or non-finite on {bad:.0%} of samples: gradients are masked "
                      "(detached input, saturated logits, non-differentiable layer). White-box numbers are "
                      "meaningless; trust only black-box/transfer results.", **health)
    if bad > 0.1:
        return _check("input_gradients", "warn", f"Input gradients are zero or non-finite on {bad:.0%} of samples.",
                      **health)
    if health["ce_zero_share"] >= 0.5:
        return _check("input_gradients", "warn",
                      f"The cross-entropy gradient is exactly zero on {health['ce_zero_share']:.0%} of samples "
                      "(saturated logits): CE-based attacks stall there; margin/DLR attacks in the ensemble do not.",
                      **health)
    return _check("input_gradients", "pass", "Input gradients are finite and non-zero.", **health)


# -- gradient masking ----------------------------------------------------------------------------
def gradient_masking_checks(model, x, y: torch.Tensor, threat, *, result=None, sweep: dict | None = None,
                            seed: int = 0, n: int = 200, batch_size: int = 256) -> list[dict]:
    """The gradient-masking checks of the inputs' modality, on (a subset of ``n``) samples correctly
    classified when clean. ``result`` (a RobustnessResult) and ``sweep`` (from ``sweep_eps``) are reused
    when given."""
    modality = for_inputs(x)
    modality.check_inputs(x, y, threat, "gradient_masking_checks")
    n = check_number(n, "n", owner="gradient_masking_checks", low=1, integer=True)
    y = y.long()
    with eval_mode(model):
        correct = modality.logits(model, x, batch_size).argmax(1) == y.cpu()
        keep = correct.nonzero().squeeze(1)[:n]
        if keep.numel() == 0:
            return [make_check("gradient_masking", "warn", "No correctly classified sample to check.")]
        ctx = CheckContext(model, modality.take(x, keep), y[keep.to(y.device)], modality, threat=threat,
                           bounds=getattr(threat, "bounds", None), batch_size=batch_size, seed=seed, result=result,
                           sweep=sweep)
        return run_checks("masking", ctx)


def _health(ctx: CheckContext) -> dict:
    return ctx.cached("health", lambda: gradient_health(ctx.model, ctx.x, ctx.y, ctx.batch_size))


@register_check("gradients_not_masked", stage="masking", modalities=("vision",))
def gradients_not_masked(ctx: CheckContext) -> dict:
    return {**_gradient_verdict(_health(ctx)), "name": "gradients_not_masked"}


@register_check("accuracy_falls_with_eps", stage="masking", modalities=("vision", "text"))
def accuracy_falls_with_eps(ctx: CheckContext) -> dict:
    sweep = ctx.sweep
    if sweep is None or len(sweep.get("eps", [])) < 2:
        top = 1.0 if ctx.threat.to_dict()["norm"] == "word-share" else float("inf")
        eps_list = sorted({min(ctx.threat.eps * f, top) for f in (0.25, 0.5, 1.0, 2.0)})
        name, params = ctx.modality.presets["quick"][0]
        accs = [ctx.accuracy(ctx.attack(name, ctx.threat.with_eps(e), **params)) for e in eps_list]
    else:
        eps_list, accs = sweep["eps"], [r["value"] for r in sweep["robust_accuracy"]]
    worst_rise = max([b - a for a, b in zip(accs, accs[1:])], default=0.0)
    return make_check("accuracy_falls_with_eps", "pass" if worst_rise <= 0.03 else "warn",
                      "Robust accuracy does not increase with eps." if worst_rise <= 0.03 else
                      f"Robust accuracy rises by {worst_rise:.1%} as eps grows: the attack is failing "
                      "(gradient masking or a bug), not the model succeeding.", eps=eps_list, accuracy=accs)


@register_check("large_eps_breaks_all", stage="masking", modalities=("vision",))
def large_eps_breaks_all(ctx: CheckContext) -> dict:
    threat = ctx.threat
    span = 1.0 if threat.bounds is None else threat.bounds[1] - threat.bounds[0]
    big = 0.5 * span if threat.norm == "linf" else 0.5 * span * ctx.x[0].numel() ** 0.5
    acc_big = ctx.accuracy(ctx.attack("pgd", threat.with_eps(big), steps=20))
    status = "pass" if acc_big <= 0.1 else ("warn" if acc_big <= 0.3 else "fail")
    return make_check("large_eps_breaks_all", status,
                      f"PGD-20 at eps={big:.3g} leaves {acc_big:.1%} accuracy" +
                      ("." if status == "pass" else ": an unbounded attack should reach ~0%; gradients "
                       "are not guiding the attack."), eps=big, accuracy=acc_big)


@register_check("black_box_not_stronger", stage="masking", modalities=("vision",))
def black_box_not_stronger(ctx: CheckContext) -> dict:
    result = ctx.result
    if result is not None:
        recs = [r for r in result.attacks if r["status"].startswith("ran")]
        white = [r for r in recs if r["kind"] == "white-box"]
        black = [r for r in recs if r["kind"] == "black-box"]
        black_after = sum(r["n_broken"] for r in black)
        n_correct = max(int(result.clean_correct.sum()), 1)
        if white and black:
            share = black_after / n_correct
            status = "pass" if black_after <= max(2, 0.01 * n_correct) else ("warn" if share <= 0.05 else "fail")
            return make_check("black_box_not_stronger", status,
                              f"Black-box attacks broke {black_after} sample(s) ({share:.1%}) that every white-box "
                              "attack left robust" + ("." if status == "pass" else
                                                     ": gradients are misleading the white-box attacks."),
                              broken_by_black_box_after_white_box=black_after, n_clean_correct=n_correct)
    acc_w = ctx.accuracy(ctx.attack("pgd", steps=20))
    acc_b = ctx.accuracy(ctx.attack("square", n_queries=1000))
    status = "pass" if acc_b >= acc_w - 0.02 else ("warn" if acc_b >= acc_w - 0.05 else "fail")
    return make_check("black_box_not_stronger", status,
                      f"PGD-20: {acc_w:.1%}, Square-1000: {acc_b:.1%}" +
                      ("." if status == "pass" else " — the black-box attack beats the white-box one: gradients "
                       "are masked."), pgd20=acc_w, square1000=acc_b)


def _pgd10(ctx: CheckContext) -> float:
    return ctx.cached("pgd10", lambda: ctx.accuracy(ctx.attack("pgd", steps=10)))


@register_check("converges_with_steps", stage="masking", modalities=("vision",))
def converges_with_steps(ctx: CheckContext) -> dict:
    if not _health(ctx)["differentiable"]:
        return make_check("converges_with_steps", "warn", "Skipped: the model has no input gradients.")
    acc10, acc_long = _pgd10(ctx), ctx.accuracy(ctx.attack("pgd", steps=50, restarts=3))
    drop = acc10 - acc_long
    return make_check("converges_with_steps", "pass" if drop <= 0.05 else "warn",
                      f"PGD-10: {acc10:.1%}, PGD-50x3: {acc_long:.1%}" +
                      ("." if drop <= 0.05 else " — accuracy keeps falling with more steps/restarts: "
                       "short attacks under-estimate the threat (masking or a hard loss surface)."),
                      pgd10=acc10, pgd50x3=acc_long)


@register_check("single_step_not_stronger", stage="masking", modalities=("vision",))
def single_step_not_stronger(ctx: CheckContext) -> dict:
    if not _health(ctx)["differentiable"]:
        return make_check("single_step_not_stronger", "warn", "Skipped: the model has no input gradients.")
    acc10, acc_fgsm = _pgd10(ctx), ctx.accuracy(ctx.attack("fgsm"))
    gap = acc10 - acc_fgsm
    return make_check("single_step_not_stronger", "pass" if gap <= 0.02 else "warn",
                      f"FGSM: {acc_fgsm:.1%}, PGD-10: {acc10:.1%}" +
                      ("." if gap <= 0.02 else " — a single step beats the iterative attack: "
                       "the loss surface is masked/curved around the inputs."), fgsm=acc_fgsm, pgd10=acc10)
