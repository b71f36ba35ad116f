"""Per-sample worst-case robustness over an attack ensemble (DESIGN decision 5).

``evaluate`` runs the attacks of a named preset in order, each only on the samples still robust
(AutoAttack's masked cascade, Croce & Hein 2020), checks every returned example itself (an attack's
own success claim is never trusted) and reports clean and robust accuracy with 95% confidence
intervals, per-class robust accuracy, and per attack: what it broke, its full config, seed and time.

Example::

    res = robustkit.evaluate(model, x, y, ThreatModel("linf", 0.1), preset="standard", seed=0)
    res.robust_accuracy, res.to_dict()["attacks"]
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .. import attacks as attack_registry
from .._validation import check_inputs, check_number
from ..threat import ThreatModel
from ._common import batched_logits, check_preset, eval_mode, gradient_health, jsonable
from .stats import accuracy_with_ci

log = logging.getLogger(__name__)

#: Named ensembles: (attack name, parameters). Later attacks run only on samples still robust.
PRESETS: dict[str, list[tuple[str, dict]]] = {
    "quick": [("pgd", {"steps": 20})],
    "standard": [("apgd-ce", {"steps": 100}),
                 ("apgd-dlr", {"steps": 100, "targeted": True, "n_target_classes": 9}),
                 ("square", {"n_queries": 5000})],
    "thorough": [("apgd-ce", {"steps": 100, "restarts": 5}),
                 ("apgd-dlr", {"steps": 100, "restarts": 5}),
                 ("apgd-dlr", {"steps": 100, "targeted": True, "n_target_classes": 9, "restarts": 3}),
                 ("square", {"n_queries": 10000, "restarts": 2})],
}
BLACK_BOX = frozenset({"square", "transfer", "noise"})


@dataclass
class RobustnessResult:
    """What ``evaluate`` returns. Tensors are per sample (N,); ``x_adv`` is kept out of the JSON."""

    threat: ThreatModel
    preset: str
    clean_correct: torch.Tensor
    robust: torch.Tensor
    broken_by: list
    pred_clean: torch.Tensor
    pred_adv: torch.Tensor
    conf_clean: torch.Tensor
    conf_adv: torch.Tensor
    y: torch.Tensor
    num_classes: int
    attacks: list
    seeds: list
    per_seed_robust: list
    mode: str
    notes: list = field(default_factory=list)
    cut: list = field(default_factory=list)
    seconds: float = 0.0
    x_adv: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean())

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean())

    def per_class(self) -> list[dict]:
        rows = []
        for c in range(self.num_classes):
            m = self.y == c
            k = int(m.sum())
            rows.append({"class": c, "n": k,
                         "clean": accuracy_with_ci(int(self.clean_correct[m].sum()), k),
                         "robust": accuracy_with_ci(int(self.robust[m].sum()), k)})
        return rows

    def to_dict(self, per_sample: bool = True) -> dict:
        n = self.n
        out = {
            "threat": self.threat.to_dict(), "preset": self.preset, "mode": self.mode, "n": n,
            "clean_accuracy": accuracy_with_ci(int(self.clean_correct.sum()), n),
            "robust_accuracy": accuracy_with_ci(int(self.robust.sum()), n),
            "per_class": self.per_class(), "attacks": jsonable(self.attacks), "seeds": self.seeds,
            "seed_spread": _spread(self.per_seed_robust), "notes": list(self.notes), "cut": list(self.cut),
            "seconds": round(self.seconds, 3), "num_classes": self.num_classes,
        }
        if per_sample:
            out["per_sample"] = {
                "y": self.y.tolist(), "clean_correct": self.clean_correct.tolist(), "robust": self.robust.tolist(),
                "broken_by": self.broken_by, "pred_clean": self.pred_clean.tolist(),
                "pred_adv": self.pred_adv.tolist(),
                "conf_clean": [round(v, 5) for v in self.conf_clean.tolist()],
                "conf_adv": [round(v, 5) for v in self.conf_adv.tolist()]}
        return out


def _spread(values: list[float]) -> dict:
    return {"robust_accuracy_per_seed": values, "min": min(values), "max": max(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0}


def resolve_ensemble(preset: str, num_classes: int, surrogate=None, attacks=None) -> list[tuple[str, dict]]:
    """The (name, params) list a preset runs for a model with ``num_classes`` outputs."""
    specs = [(n, dict(p)) for n, p in (attacks if attacks is not None else PRESETS[preset])]
    for name, params in specs:
        if "n_target_classes" in params:
            params["n_target_classes"] = max(1, min(params["n_target_classes"], num_classes - 1))
    if surrogate is not None and not any(n == "transfer" for n, _ in specs):
        specs.append(("transfer", {"surrogate": surrogate}))
    return specs


def evaluate(model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, preset: str = "quick", *,
             seed: int = 0, batch_size: int = 256, max_minutes: float | None = None, seeds: int = 1,
             attacks: list[tuple[str, dict]] | None = None, surrogate=None, progress: bool = False,
             ) -> RobustnessResult:
    """Worst-case accuracy of ``model`` on (x, y) under ``threat``, per sample, over a preset ensemble.

    Args:
      model: logits model taking inputs in the threat's bounds (normalization inside the model).
      x, y: (N, ...) inputs and (N,) labels.
      preset: "quick" (PGD-20), "standard" (APGD-CE, APGD-T, Square-5000) or "thorough".
      seed: base seed of every randomized attack; ``seeds`` > 1 repeats the cascade with seeds
        seed, seed+1, ... and reports the per-sample worst case plus the spread across seeds.
      max_minutes: time budget; attacks (or batches) not reached are listed in ``result.cut``.
      attacks: an explicit [(name, params), ...] ensemble instead of the preset's.
      surrogate: a model to craft transfer attacks on (appended to the ensemble).

    Models without usable input gradients (quantized, detached, non-differentiable) are audited with
    the black-box attacks only (Square is added if the ensemble has none) and ``result.mode`` says so.
    """
    if not isinstance(threat, ThreatModel):
        raise TypeError(f"The 'threat' parameter of evaluate must be a robustkit.ThreatModel. "
                        f"Got {type(threat).__name__} instead.")
    preset = "custom" if attacks is not None else check_preset(preset, PRESETS, "evaluate")
    check_inputs(x, y, bounds=threat.bounds, owner="evaluate")
    seed = check_number(seed, "seed", owner="evaluate", low=0, integer=True)
    seeds = check_number(seeds, "seeds", owner="evaluate", low=1, integer=True)
    batch_size = check_number(batch_size, "batch_size", owner="evaluate", low=1, integer=True)
    if max_minutes is not None:
        max_minutes = check_number(max_minutes, "max_minutes", owner="evaluate", low=0, low_inclusive=False)
    y = y.long()
    start = time.perf_counter()
    deadline = None if max_minutes is None else start + 60.0 * max_minutes
    with eval_mode(model):
        logits = batched_logits(model, x, batch_size)
        num_classes = int(logits.shape[1])
        probs = logits.softmax(1)
        pred_clean, conf_clean = logits.argmax(1), probs.max(1).values
        clean_correct = pred_clean == y
        specs = resolve_ensemble(preset, num_classes, surrogate, attacks)
        notes = []
        kinds = {"black-box" if n in BLACK_BOX else "white-box" for n, _ in specs}
        mode = " + ".join(sorted(kinds, reverse=True))
        health = gradient_health(model, x[: min(64, x.shape[0])], y[: min(64, x.shape[0])], batch_size)
        if not health["differentiable"] or health["zero_share"] + health["nonfinite_share"] >= 0.5:
            mode = "black-box only"
            notes.append(f"Input gradients are unusable (differentiable={health['differentiable']}, zero on "
                         f"{health['zero_share']:.0%}, non-finite on {health['nonfinite_share']:.0%} of samples): "
                         "white-box attacks are skipped and the model is audited with black-box/transfer attacks.")
            if not any(n in BLACK_BOX - {"noise"} for n, _ in specs):
                specs.append(("square", {"n_queries": 5000}))
        robust_all = clean_correct.clone()
        x_adv = x.detach().clone()
        broken_by: list = [None if c else "clean" for c in clean_correct.tolist()]
        records, per_seed, cut = [], [], []
        for k in range(seeds):
            robust_k, recs = _cascade(model, x, y, threat, specs, seed + k, batch_size, clean_correct, x_adv,
                                      broken_by, robust_all, mode, deadline, cut, progress)
            per_seed.append(float(robust_k.float().mean()))
            robust_all &= robust_k
            records.extend(recs)
        adv_logits = batched_logits(model, x_adv, batch_size)
    adv_probs = adv_logits.softmax(1)
    if cut:
        notes.append("The time budget cut part of the ensemble: the robust accuracy is an upper bound.")
    return RobustnessResult(threat=threat, preset=preset, clean_correct=clean_correct, robust=robust_all,
                            broken_by=broken_by, pred_clean=pred_clean, pred_adv=adv_logits.argmax(1),
                            conf_clean=conf_clean, conf_adv=adv_probs.max(1).values, y=y, num_classes=num_classes,
                            attacks=records, seeds=[seed + k for k in range(seeds)], per_seed_robust=per_seed,
                            mode=mode, notes=notes, cut=cut, seconds=time.perf_counter() - start, x_adv=x_adv)


def _cascade(model, x, y, threat, specs, seed, batch_size, clean_correct, x_adv, broken_by, robust_all, mode,
             deadline, cut, progress):
    """One pass of the ensemble with one seed. Updates x_adv/broken_by for newly broken samples."""
    robust = clean_correct.clone()
    records = []
    for name, params in specs:
        attack = attack_registry.create(name, threat, seed=seed, **params)
        rec = {"name": name, "kind": "black-box" if name in BLACK_BOX else "white-box",
               "params": attack.params(), "seed": seed, "n_attacked": 0, "n_broken": 0, "seconds": 0.0,
               "status": "ran"}
        records.append(rec)
        if mode == "black-box only" and name not in BLACK_BOX:
            rec["status"] = "skipped: input gradients unusable"
            continue
        idx = robust.nonzero().squeeze(1)
        t0 = time.perf_counter()
        chunks = list(range(0, idx.numel(), batch_size))
        for j, i in enumerate(tqdm(chunks, desc=f"{name} (seed {seed})", disable=not progress, leave=False)):
            if deadline is not None and time.perf_counter() > deadline:
                rec["status"] = f"cut by the time budget after {rec['n_attacked']} of {idx.numel()} samples"
                cut.append({"attack": name, "seed": seed, "attacked": rec["n_attacked"], "of": int(idx.numel())})
                break
            b = idx[i:i + batch_size]
            xa = attack(model, x[b], y[b])
            with torch.no_grad():
                ok = model(xa).argmax(1) != y[b]  # verified here, whatever the attack claims
            rec["n_attacked"] += int(b.numel())
            rec["n_broken"] += int(ok.sum())
            robust[b[ok]] = False
            newly = b[ok & robust_all[b]]
            x_adv[newly] = xa[ok & robust_all[b]]
            for s in newly.tolist():
                broken_by[s] = name
            keep = b[~ok & robust_all[b]]
            x_adv[keep] = xa[~ok & robust_all[b]]  # the last (failed) candidate, for confidence plots
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        rec["robust_after"] = int(robust.sum())
        log.info("%s (seed %d): broke %d of %d in %.1fs", name, seed, rec["n_broken"], rec["n_attacked"],
                 rec["seconds"])
    return robust, records


def _check_eps_list(eps_list, owner: str) -> list[float]:
    if isinstance(eps_list, (int, float, str)) or not hasattr(eps_list, "__iter__"):
        raise TypeError(f"The 'eps' parameter of {owner} must be a list of numbers >= 0. Got {eps_list!r} instead.")
    out = []
    for e in eps_list:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not float(e) == float(e):
            raise TypeError(f"The 'eps' parameter of {owner} must be a list of numbers >= 0. Got {e!r} instead.")
        if e < 0:
            raise ValueError(f"The 'eps' parameter of {owner} must be a list of numbers >= 0. Got {e!r} instead.")
        out.append(float(e))
    if not out:
        raise ValueError(f"The 'eps' parameter of {owner} must be a non-empty list of numbers >= 0. Got [] instead.")
    return out


def sweep_eps(model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, eps: list[float], *,
              preset: str = "quick", seed: int = 0, batch_size: int = 256, max_minutes: float | None = None,
              progress: bool = False) -> dict:
    """Robust accuracy at each eps of a list (one ``evaluate`` per eps, same preset and seed).

    Returns {"eps": [...], "robust_accuracy": [{"value", "ci95", ...}, ...], "preset", "seconds"}.
    Example: ``sweep_eps(model, x, y, ThreatModel("linf", 0.1), [0, 0.05, 0.1, 0.2])``
    """
    eps = _check_eps_list(eps, "sweep_eps")
    check_preset(preset, PRESETS, "sweep_eps")
    if not isinstance(threat, ThreatModel):
        raise TypeError(f"The 'threat' parameter of sweep_eps must be a robustkit.ThreatModel. "
                        f"Got {type(threat).__name__} instead.")
    t0 = time.perf_counter()
    rows, cut, done = [], [], []
    for e in sorted(eps):
        left = None if max_minutes is None else max_minutes - (time.perf_counter() - t0) / 60
        if left is not None and left <= 0:
            cut.append(e)
            continue
        if e == 0:
            with eval_mode(model):
                correct = batched_logits(model, x, batch_size).argmax(1) == y
            rows.append(accuracy_with_ci(int(correct.sum()), int(y.numel())))
            done.append(e)
            continue
        res = evaluate(model, x, y, threat.with_eps(e), preset, seed=seed, batch_size=batch_size,
                       max_minutes=left, progress=progress)
        rows.append(res.to_dict(per_sample=False)["robust_accuracy"])
        done.append(e)
        cut.extend([e] if res.cut else [])
    return {"eps": done, "robust_accuracy": rows, "preset": preset, "norm": threat.norm, "seed": seed,
            "cut": cut, "seconds": round(time.perf_counter() - t0, 3)}


def noise_robustness(model, x: torch.Tensor, y: torch.Tensor, sigmas: list[float], *, seed: int = 0,
                     bounds: tuple[float, float] | None = (0.0, 1.0), batch_size: int = 256) -> dict:
    """Accuracy under additive Gaussian noise N(0, sigma^2) per input coordinate, clipped to ``bounds``.

    Returns {"sigma": [...], "accuracy": [{"value", "ci95", ...}, ...], "seed"}.
    Example: ``noise_robustness(model, x, y, [0.05, 0.1, 0.2])``
    """
    sigmas = _check_eps_list(sigmas, "noise_robustness")
    check_inputs(x, y, bounds=bounds, owner="noise_robustness")
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    rows = []
    with eval_mode(model), torch.no_grad():
        for s in sigmas:
            xn = x + s * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            if bounds is not None:
                xn = xn.clamp(*bounds)
            correct = batched_logits(model, xn, batch_size).argmax(1) == y
            rows.append(accuracy_with_ci(int(correct.sum()), int(y.numel())))
    return {"sigma": sigmas, "accuracy": rows, "seed": seed}
