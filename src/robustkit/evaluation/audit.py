"""The audit: preflight, ensemble evaluation, eps sweep, sanity checks, noise, certification and
provenance, gathered into one JSON document (reports are rendered from it, never recomputed).

Example::

    doc = run_audit(model, x, y, ThreatModel("linf", 0.1), preset="standard", sweep=[0, 0.05, 0.1, 0.2])
    write_report(doc, "runs/fmnist-pgd")   # audit.json, audit.md, audit.html
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from .._validation import check_number
from ..modality import for_inputs
from .certify import certify
from .provenance import environment
from .robustness import _check_eps_list, evaluate, noise_robustness, sweep_eps
from .sanity import gradient_masking_checks, preflight, worst_status
from ._common import check_preset

log = logging.getLogger(__name__)
AUDIT_FORMAT = "robustkit-audit"


class PreflightError(ValueError):
    """The model/data contract is broken in a way that makes any robustness number meaningless."""


def _metrics(y: list[int], pred: list[int], k: int) -> tuple[list[list[int]], list[dict]]:
    """Confusion matrix (rows true, columns predicted) and per-class precision/recall over all ``k`` classes.

    ``labels=range(k)`` keeps absent classes as rows/columns of zeros, so matrices of different audits line up;
    ``zero_division=nan`` marks an undefined ratio (no predictions / no samples of the class), written as None.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # ~1 s to import: only here
    labels = list(range(k))
    conf = confusion_matrix(y, pred, labels=labels).tolist()
    prec, rec, _, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=np.nan)
    rows = [{"class": c, "precision": None if np.isnan(prec[c]) else float(prec[c]),
             "recall": None if np.isnan(rec[c]) else float(rec[c]), "support": int(support[c])} for c in labels]
    return conf, rows


def _same_eps(a: float, b: float) -> bool:
    # eps values arrive as parsed fractions (8/255) or typed decimals: equal up to rounding, not bit for bit
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


def merge_headline_into_sweep(sweep: dict, eps: float, headline: dict, headline_preset: str) -> dict:
    """The sweep with the headline evaluation as its point at ``eps`` (replacing the sweep's own number there,
    or added when the sweep lacks that eps), so one eps never shows two robust accuracies. Records the preset of
    every point (``presets``), ``headline_eps``, the replaced sweep value, and notes where a point of the weaker
    sweep preset shows a higher robust accuracy at a larger eps than the headline (shown, not hidden)."""
    out = {**sweep, "eps": list(sweep["eps"]), "robust_accuracy": list(sweep["robust_accuracy"])}
    out["presets"] = [sweep["preset"]] * len(out["eps"])
    at = next((i for i, e in enumerate(out["eps"]) if _same_eps(e, eps)), None)
    out["replaced"] = None
    if at is None:
        at = sum(1 for e in out["eps"] if e < eps)
        out["eps"].insert(at, float(eps))
        out["robust_accuracy"].insert(at, headline)
        out["presets"].insert(at, headline_preset)
    else:
        out["replaced"] = {"eps": out["eps"][at], "preset": sweep["preset"],
                           "robust_accuracy": out["robust_accuracy"][at]}
        out["robust_accuracy"][at] = headline
        out["presets"][at] = headline_preset
    out["headline_eps"] = float(eps)
    out["headline_index"] = at
    out["headline_preset"] = headline_preset
    notes = []
    h = headline.get("value")
    for e, acc, p in zip(out["eps"], out["robust_accuracy"], out["presets"]):
        if h is not None and acc.get("value") is not None and e > eps and acc["value"] > h and p != headline_preset:
            notes.append(f"The sweep point eps={e:.4g} (preset {p}) shows {100 * acc['value']:.1f}% robust accuracy, "
                         f"higher than the headline {100 * h:.1f}% at the smaller eps={eps:.4g} (preset "
                         f"{headline_preset}): the weaker {p} preset overestimates robustness; the headline is the "
                         "number to trust, and a sweep with the headline preset (sweep_preset) gives a comparable "
                         "curve.")
    out["notes"] = notes
    return out


def training_curve_from_metrics(path) -> dict | None:
    """``{"epoch", "val_clean_acc", "val_robust_acc"}`` lists from a run's metrics.jsonl, or None when the file is
    absent or holds no validation lines. A resumed run repeats epochs: the last line of an epoch wins."""
    path = Path(path)
    if not path.is_file():
        return None
    by_epoch: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a killed run: the others still make a curve
        if isinstance(row, dict) and "epoch" in row and "val_clean_acc" in row:
            by_epoch[int(row["epoch"])] = row
    if not by_epoch:
        return None
    epochs = sorted(by_epoch)
    return {"epoch": epochs, "val_clean_acc": [by_epoch[e].get("val_clean_acc") for e in epochs],
            "val_robust_acc": [by_epoch[e].get("val_robust_acc") for e in epochs]}


def _model_doc(model, model_info: dict | None) -> dict:
    """What the report's header says about the model: the caller's ``model_info`` (architecture, method,
    training eps/norm, run folder; the CLI fills it from the checkpoint) plus the parameter count, counted here."""
    info = {"architecture": None, "parameters": None, "method": None, "training_eps": None, "training_norm": None,
            "run_folder": None, **(model_info or {})}
    spec = getattr(model, "robustkit_spec", None)  # set by robustkit.models.create_model
    if info["architecture"] is None and isinstance(spec, dict):
        info["architecture"] = spec.get("name")
    if hasattr(model, "parameters"):
        # unique tensors only: tied weights (embeddings/heads) count once
        seen = {id(p): p.numel() for p in model.parameters()}
        if seen:
            info["parameters"] = int(sum(seen.values()))
    return info


def _gallery(modality, x, x_adv, res, count: int) -> list[dict]:
    """Up to ``count`` examples, adversarially broken ones first (images as nested lists with 3 decimals,
    texts as strings with the changed word positions)."""
    broken = (res.clean_correct & ~res.robust).nonzero().squeeze(1).tolist()
    robust = res.robust.nonzero().squeeze(1).tolist()
    out = []
    for i in (broken + robust)[:count]:
        out.append({"index": i, "label": int(res.y[i]), "pred_clean": int(res.pred_clean[i]),
                    "pred_adv": int(res.pred_adv[i]), "broken_by": res.broken_by[i],
                    "conf_clean": round(float(res.conf_clean[i]), 4), "conf_adv": round(float(res.conf_adv[i]), 4),
                    **modality.example(x, x_adv, i)})
    return out


def float_twin(model):
    """The one rule for models without usable gradients (int8, ONNX Runtime, ...): such a model sets
    ``robustkit_differentiable = False`` and ``robustkit_float_twin`` (a differentiable model of the same
    function, or a method returning one). Returns that twin, or None for an ordinary model."""
    if getattr(model, "robustkit_differentiable", True) is not False:
        return None
    twin = getattr(model, "robustkit_float_twin", None)
    if callable(twin) and not isinstance(twin, torch.nn.Module):
        twin = twin()
    if twin is None:
        raise ValueError("The model declares robustkit_differentiable=False but no robustkit_float_twin: it cannot "
                         "be audited honestly (gradient attacks do not apply to it and no transfer source exists).")
    return twin


def non_differentiable_ensemble(modality, preset: str, attacks, twin) -> tuple[list, str]:
    """The ensemble for a model without gradients: each white-box attack of the preset (or of ``attacks``)
    is crafted on the float ``twin`` and transferred; black-box and query-only attacks run on the model
    itself (gradient word ranking becomes deletion ranking), a text attack first on the twin too (its
    sentences transferred); Square is added for images when absent."""
    specs = [(n, dict(p)) for n, p in (attacks if attacks is not None else modality.presets[preset])]
    from ..attacks import get_class
    out = []
    for name, params in specs:
        kind = get_class(name).kind
        if kind == "white-box":
            out.append(("transfer", {"surrogate": twin, "attack": name, "attack_params": params}))
        else:
            if kind == "discrete":  # the same search on the float twin first: it finds what the direct one misses
                out.append(("text-transfer", {"surrogate": twin, "attack": name, "attack_params": dict(params)}))
            if params.get("importance") == "gradient":
                params["importance"] = "deletion"
            out.append((name, params))
    if modality.continuous and not any(get_class(n).kind == "black-box" and n not in ("noise", "transfer")
                                       for n, _ in out):
        out.append(("square", {"n_queries": 5000}))
    names = ", ".join(f"{n}[{p['attack']}]" if n in ("transfer", "text-transfer") else n for n, p in out)
    note = (f"The model is not differentiable (declared robustkit_differentiable=False, e.g. int8 or ONNX "
            f"Runtime): no gradient attack runs on it. The {preset if attacks is None else 'given'} ensemble ran as "
            f"{names}: white-box attacks crafted on its float twin and transferred, plus query-only attacks on the "
            "model itself.")
    return out, note


def run_audit(model, x, y: torch.Tensor, threat, *, preset: str = "standard",
              seed: int = 0, seeds: int = 1, batch_size: int = 256, max_minutes: float | None = None,
              sweep: list[float] | None = None, sweep_preset: str = "quick", noise_sigmas: list[float] | None = None,
              certify_sigma: float | None = None, certify_n: int = 1000, certify_n0: int = 100,
              certify_alpha: float = 0.001, certify_limit: int = 100, surrogate=None, attacks=None,
              class_names: list[str] | None = None, checkpoint: dict | None = None, data: dict | None = None,
              gallery: int = 8, sanity: bool = True, progress: bool = False, state_dir=None,
              model_info: dict | None = None, training_curve: dict | None = None) -> dict:
    """Run the whole audit and return its JSON document (see module docstring).

    Images and texts take the same path: ``x`` is an image tensor (``threat`` a ThreatModel) or a
    list of sentences (``threat`` a SubstitutionThreat); the modality adapter does the rest. Noise
    robustness and randomized-smoothing certification need continuous inputs (images).
    ``model_info`` (architecture, method, training_eps, training_norm, run_folder) and ``training_curve``
    (see :func:`training_curve_from_metrics`) are shown in the report's header; unknown items read "n/a".
    """
    modality = for_inputs(x)
    if not hasattr(threat, "to_dict") or not hasattr(threat, "with_eps"):
        raise TypeError(f"The 'threat' parameter of run_audit must be a robustkit.ThreatModel (or a "
                        f"SubstitutionThreat for texts). Got {type(threat).__name__} instead.")
    if attacks is None:
        check_preset(preset, modality.presets, "run_audit")
    check_preset(sweep_preset, modality.presets, "run_audit")
    if not modality.continuous and (noise_sigmas or certify_sigma is not None):
        raise ValueError(f"Gaussian-noise robustness and randomized-smoothing certification need continuous "
                         f"inputs; a {modality.name} model takes neither --noise nor --certify-sigma.")
    sweep = None if sweep is None else _check_eps_list(sweep, "run_audit")
    noise_sigmas = None if noise_sigmas is None else _check_eps_list(noise_sigmas, "run_audit")
    if certify_sigma is not None:
        check_number(certify_sigma, "certify_sigma", owner="run_audit", low=0, low_inclusive=False)
    if max_minutes is not None:
        max_minutes = check_number(max_minutes, "max_minutes", owner="run_audit", low=0, low_inclusive=False)
    modality.check_inputs(x, y, None, "run_audit")
    y = y.long()
    t0 = time.perf_counter()
    left = (lambda: None) if max_minutes is None else (lambda: max_minutes - (time.perf_counter() - t0) / 60)
    cut: list[str] = []

    checks = preflight(model, x, y, bounds=getattr(threat, "bounds", None), batch_size=batch_size)
    bad_bounds = [c for c in checks if c["name"] == "inputs_in_bounds" and c["status"] == "fail"]
    if bad_bounds:
        raise PreflightError(bad_bounds[0]["message"])
    budget = None if left() is None else max(left(), 1e-12)  # an exhausted budget still runs (and cuts) the cascade
    twin = float_twin(model)
    twin_note = None
    if twin is not None:
        attacks, twin_note = non_differentiable_ensemble(modality, preset, attacks, twin)
        for c in checks:  # missing gradients are declared and handled (no gradient attack runs): not a failure
            if c["name"] == "input_gradients" and c["status"] == "fail":
                c["status"] = "warn"
                c["message"] = ("No input gradients, as declared (robustkit_differentiable=False): white-box attacks "
                                "are crafted on the float twin and transferred. " + c["message"])
    res = evaluate(model, x, y, threat, preset, seed=seed, seeds=seeds, batch_size=batch_size, max_minutes=budget,
                   surrogate=surrogate, attacks=attacks, progress=progress, state_dir=state_dir)
    if twin_note:
        res.notes.insert(0, twin_note)
    cut += [f"evaluation: {c['attack']} (seed {c['seed']}) stopped after {c['attacked']} of {c['of']} samples"
            for c in res.cut]
    doc: dict = {"format": AUDIT_FORMAT, "version": 2, "modality": modality.name,
                 "created": dt.datetime.now(dt.timezone.utc).isoformat(),
                 "threat": threat.to_dict(), "threat_description": modality.describe_threat(threat),
                 "preset": res.preset, "seed": seed, "seeds": res.seeds,
                 "class_names": class_names or [str(c) for c in range(res.num_classes)],
                 "evaluation": res.to_dict(), "preflight": checks,
                 "model": _model_doc(model, model_info), "training_curve": training_curve,
                 "differentiable": twin is None,
                 "transferred_from_twin": [p["attack"] for n, p in (attacks or [])
                                           if twin is not None and n == "transfer"]}

    def stage(name, fn):
        remaining = left()
        if remaining is not None and remaining <= 0:
            cut.append(f"{name}: skipped, the time budget was spent")
            return None
        return fn(remaining)

    doc["sweep"] = None if not sweep else stage("eps sweep", lambda r: sweep_eps(
        model, x, y, threat, sweep, preset=sweep_preset, seed=seed, batch_size=batch_size, max_minutes=r,
        progress=progress))
    if doc["sweep"] and doc["sweep"]["cut"]:
        cut.append(f"eps sweep: eps {doc['sweep']['cut']} cut by the time budget")
    doc["sanity"] = None if not sanity else stage("gradient-masking checks", lambda r: gradient_masking_checks(
        model, x, y, threat, result=res, sweep=doc["sweep"], seed=seed, batch_size=batch_size))
    if doc["sweep"]:
        # After the sanity checks, which compare the sweep's points under one preset: the merged curve mixes two.
        doc["sweep"] = merge_headline_into_sweep(doc["sweep"], threat.eps,
                                                 doc["evaluation"]["robust_accuracy"], res.preset)
    doc["noise"] = None if not noise_sigmas else stage("noise robustness", lambda r: noise_robustness(
        model, x, y, noise_sigmas, seed=seed, bounds=threat.bounds, batch_size=batch_size))
    n_cert = min(int(certify_limit), modality.size(x))
    doc["certification"] = None if certify_sigma is None else stage("certification", lambda r: certify(
        model, x[:n_cert], y[:n_cert], certify_sigma, n0=certify_n0, n=certify_n, alpha=certify_alpha, seed=seed,
        progress=progress))
    k = res.num_classes
    y_list = res.y.tolist()
    conf_clean, pr_clean = _metrics(y_list, res.pred_clean.tolist(), k)
    conf_adv, pr_adv = _metrics(y_list, res.pred_adv.tolist(), k)
    doc["metrics"] = {"confusion_clean": conf_clean, "confusion_adversarial": conf_adv,
                      "precision_recall_clean": pr_clean, "precision_recall_adversarial": pr_adv}
    doc["gallery"] = _gallery(modality, x, res.x_adv, res, gallery)
    all_checks = checks + (doc["sanity"] or [])
    doc["verdict"] = {"status": worst_status(all_checks),
                      "failed": [c["name"] for c in all_checks if c["status"] == "fail"],
                      "warned": [c["name"] for c in all_checks if c["status"] == "warn"],
                      "mode": res.mode}
    doc["cut"] = cut
    device = next((p.device for p in model.parameters()), None) if hasattr(model, "parameters") else None
    doc["provenance"] = {**environment(device), "checkpoint": checkpoint, "data": {
        **(data or {}), "n": modality.size(x), "sha256": modality.fingerprint(x, y)},
        "seeds": res.seeds, "batch_size": batch_size, "max_minutes": max_minutes,
        "wall_seconds": round(time.perf_counter() - t0, 3)}
    log.info("audit done in %.1fs: clean %.3f robust %.3f", doc["provenance"]["wall_seconds"],
             res.clean_accuracy, res.robust_accuracy)
    return doc
