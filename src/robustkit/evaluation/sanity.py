"""Sanity checks: the preflight contract check and the gradient-masking checks.

Each check returns ``{"name", "status": "pass"|"warn"|"fail", "message", "evidence"}``. The
preflight catches users' most common robustness bugs before any attack runs (normalization outside
the model, softmax outputs, train-mode batch-norm, randomized forwards, missing gradients). The
gradient-masking checks follow Athalye, Carlini & Wagner (ICML 2018) and Carlini et al., "On
Evaluating Adversarial Robustness" (2019): a defence whose numbers fail them is not robust, its
gradients are.

Example::

    checks = preflight(model, x, y, bounds=(0, 1))
    checks += gradient_masking_checks(model, x, y, ThreatModel("linf", 0.1), result=res, sweep=sw)
"""
from __future__ import annotations

import torch
from torch import nn

from .. import attacks as attack_registry
from .._validation import check_inputs, check_number
from ..threat import ThreatModel
from ._common import batched_logits, eval_mode, gradient_health

ORDER = {"pass": 0, "warn": 1, "fail": 2}


def _check(name: str, status: str, message: str, **evidence) -> dict:
    return {"name": name, "status": status, "message": message, "evidence": evidence}


def worst_status(checks: list[dict]) -> str:
    return max((c["status"] for c in checks), key=ORDER.__getitem__, default="pass")


# -- preflight -----------------------------------------------------------------------------------
def preflight(model, x: torch.Tensor, y: torch.Tensor | None = None, *, bounds: tuple[float, float] | None = (0.0, 1.0),
              batch_size: int = 256) -> list[dict]:
    """The contract check run before every audit (and alone as ``robustkit check``)."""
    check_inputs(x, y, owner="preflight")
    checks = []
    lo, hi = float(x.min()), float(x.max())
    if bounds is not None and (lo < bounds[0] - 1e-6 or hi > bounds[1] + 1e-6):
        checks.append(_check("inputs_in_bounds", "fail",
                             f"Inputs span [{lo:.3g}, {hi:.3g}] but the declared bounds are {list(bounds)}. Feed raw "
                             "inputs in their natural range and put normalization inside the model "
                             "(robustkit.models.Normalize); otherwise eps means something else.",
                             min=lo, max=hi, bounds=list(bounds)))
    else:
        checks.append(_check("inputs_in_bounds", "pass", "Inputs lie inside the declared bounds.", min=lo, max=hi))

    modules = list(model.modules()) if isinstance(model, nn.Module) else []
    noisy = [type(m).__name__ for m in modules if m.training and isinstance(m, (nn.modules.batchnorm._BatchNorm,
                                                                                     nn.Dropout))]
    if noisy:
        checks.append(_check("eval_mode", "warn",
                             f"{len(noisy)} batch-norm/dropout module(s) are in training mode ({sorted(set(noisy))}). "
                             "Call model.eval() before attacking or evaluating; the audit does so itself.",
                             modules=sorted(set(noisy)), count=len(noisy)))
    else:
        checks.append(_check("eval_mode", "pass", "No batch-norm/dropout module is in training mode."))

    xs = x[: min(256, x.shape[0])]
    ys = None if y is None else y[: xs.shape[0]].long()
    with eval_mode(model):
        out1 = batched_logits(model, xs, batch_size)
        out2 = batched_logits(model, xs, batch_size)
        rows_prob = bool((out1 >= -1e-6).all()) and bool(((out1.sum(1) - 1).abs() < 1e-3).all())
        if rows_prob:
            checks.append(_check("returns_logits", "warn",
                                 "The model's outputs are non-negative and sum to 1: it returns probabilities. "
                                 "Remove the final softmax and return logits; cross-entropy on probabilities "
                                 "saturates and masks gradients.", row_sum_mean=float(out1.sum(1).mean())))
        else:
            checks.append(_check("returns_logits", "pass", "The model returns logits (rows are not probabilities).",
                                 classes=int(out1.shape[1])))
        diff = float((out1 - out2).abs().max())
        if diff > 1e-5:
            checks.append(_check("deterministic", "warn",
                                 f"Two forward passes in eval mode differ (max |diff| = {diff:.3g}): the model is "
                                 "randomized. Attacks need Expectation over Transformation (EOT) against it; "
                                 "the numbers in this report do not use EOT.", max_abs_diff=diff))
        else:
            checks.append(_check("deterministic", "pass", "Two forward passes in eval mode agree.",
                                 max_abs_diff=diff))
        if ys is None:
            ys = out1.argmax(1)
        health = gradient_health(model, xs, ys, batch_size)
    checks.append(_gradient_verdict(health))
    return checks


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
def _acc(model, x, y, attack, batch_size):
    xa = torch.cat([attack(model, x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    with torch.no_grad():
        return float((batched_logits(model, xa, batch_size).argmax(1) == y).float().mean())


def gradient_masking_checks(model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, result=None,
                            sweep: dict | None = None, seed: int = 0, n: int = 200, batch_size: int = 256
                            ) -> list[dict]:
    """The six gradient-masking checks, on (a subset of ``n``) samples correctly classified when clean.

    ``result`` (a RobustnessResult) and ``sweep`` (from ``sweep_eps``) are reused when given.
    """
    check_inputs(x, y, bounds=threat.bounds, owner="gradient_masking_checks")
    n = check_number(n, "n", owner="gradient_masking_checks", low=1, integer=True)
    y = y.long()
    checks = []
    with eval_mode(model):
        correct = batched_logits(model, x, batch_size).argmax(1) == y
        xs, ys = x[correct][:n], y[correct][:n]
        if xs.shape[0] == 0:
            return [_check("gradient_masking", "warn", "No correctly classified sample to check.")]
        health = gradient_health(model, xs, ys, batch_size)
        checks.append({**_gradient_verdict(health), "name": "gradients_not_masked"})
        make = lambda name, th=threat, **kw: attack_registry.create(name, th, seed=seed, **kw)  # noqa: E731
        # 1. accuracy falls as eps grows
        if sweep is None or len(sweep.get("eps", [])) < 2:
            eps_list = [threat.eps * f for f in (0.25, 0.5, 1.0, 2.0)]
            accs = [_acc(model, xs, ys, make("pgd", threat.with_eps(e), steps=10), batch_size) for e in eps_list]
        else:
            eps_list, accs = sweep["eps"], [r["value"] for r in sweep["robust_accuracy"]]
        rises = [b - a for a, b in zip(accs, accs[1:])]
        worst_rise = max(rises, default=0.0)
        checks.append(_check("accuracy_falls_with_eps", "pass" if worst_rise <= 0.03 else "warn",
                             "Robust accuracy does not increase with eps." if worst_rise <= 0.03 else
                             f"Robust accuracy rises by {worst_rise:.1%} as eps grows: the attack is failing "
                             "(gradient masking or a bug), not the model succeeding.",
                             eps=eps_list, accuracy=accs))
        # 2. a very large eps brings accuracy near 0
        span = 1.0 if threat.bounds is None else threat.bounds[1] - threat.bounds[0]
        big = 0.5 * span if threat.norm == "linf" else 0.5 * span * xs[0].numel() ** 0.5
        acc_big = _acc(model, xs, ys, make("pgd", threat.with_eps(big), steps=20), batch_size)
        status = "pass" if acc_big <= 0.1 else ("warn" if acc_big <= 0.3 else "fail")
        checks.append(_check("large_eps_breaks_all", status,
                             f"PGD-20 at eps={big:.3g} leaves {acc_big:.1%} accuracy" +
                             ("." if status == "pass" else ": an unbounded attack should reach ~0%; gradients "
                              "are not guiding the attack."), eps=big, accuracy=acc_big))
        # 3. black-box does not beat white-box
        checks.append(_black_vs_white(model, xs, ys, threat, result, make, batch_size))
        # 4. more steps / restarts do not keep lowering accuracy;  5. single-step is not below multi-step
        if health["differentiable"]:
            acc10 = _acc(model, xs, ys, make("pgd", steps=10), batch_size)
            acc_long = _acc(model, xs, ys, make("pgd", steps=50, restarts=3), batch_size)
            drop = acc10 - acc_long
            checks.append(_check("converges_with_steps", "pass" if drop <= 0.05 else "warn",
                                 f"PGD-10: {acc10:.1%}, PGD-50x3: {acc_long:.1%}" +
                                 ("." if drop <= 0.05 else " — accuracy keeps falling with more steps/restarts: "
                                  "short attacks under-estimate the threat (masking or a hard loss surface)."),
                                 pgd10=acc10, pgd50x3=acc_long))
            acc_fgsm = _acc(model, xs, ys, make("fgsm"), batch_size)
            gap = acc10 - acc_fgsm
            checks.append(_check("single_step_not_stronger", "pass" if gap <= 0.02 else "warn",
                                 f"FGSM: {acc_fgsm:.1%}, PGD-10: {acc10:.1%}" +
                                 ("." if gap <= 0.02 else " — a single step beats the iterative attack: "
                                  "the loss surface is masked/curved around the inputs."),
                                 fgsm=acc_fgsm, pgd10=acc10))
    return checks


def _black_vs_white(model, xs, ys, threat, result, make, batch_size) -> dict:
    if result is not None:
        recs = [r for r in result.attacks if r["status"] == "ran"]
        white = [r for r in recs if r["kind"] == "white-box"]
        black = [r for r in recs if r["kind"] == "black-box"]
        black_after = sum(r["n_broken"] for r in black)
        n_correct = max(int(result.clean_correct.sum()), 1)
        if white and black:
            share = black_after / n_correct
            status = "pass" if black_after <= max(2, 0.01 * n_correct) else ("warn" if share <= 0.05 else "fail")
            return _check("black_box_not_stronger", status,
                          f"Black-box attacks broke {black_after} sample(s) ({share:.1%}) that every white-box "
                          "attack left robust" + ("." if status == "pass" else
                                                 ": gradients are misleading the white-box attacks."),
                          broken_by_black_box_after_white_box=black_after, n_clean_correct=n_correct)
    acc_w = _acc(model, xs, ys, make("pgd", steps=20), batch_size)
    acc_b = _acc(model, xs, ys, make("square", n_queries=1000), batch_size)
    status = "pass" if acc_b >= acc_w - 0.02 else ("warn" if acc_b >= acc_w - 0.05 else "fail")
    return _check("black_box_not_stronger", status,
                  f"PGD-20: {acc_w:.1%}, Square-1000: {acc_b:.1%}" +
                  ("." if status == "pass" else " — the black-box attack beats the white-box one: gradients are "
                   "masked."), pgd20=acc_w, square1000=acc_b)
