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

import json
import logging
import math
import statistics
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .. import attacks as attack_registry
from .._validation import check_inputs, check_number
from ..distributed import gather_objects, rank_world
from ..modality import Modality, for_inputs, get_modality
from ..threat import ThreatModel
from ._common import batched_logits, check_preset, eval_mode, gradient_health, jsonable
from .stats import accuracy_with_ci

log = logging.getLogger(__name__)

#: The image presets (each modality has its own under the same names: ``modality.presets``).
PRESETS: dict[str, list[tuple[str, dict]]] = get_modality("vision").presets


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
    x_adv: object = None
    modality: str = "vision"

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
            "modality": self.modality, "threat": self.threat.to_dict(), "preset": self.preset, "mode": self.mode,
            "n": n,
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


def resolve_ensemble(preset: str, num_classes: int, surrogate=None, attacks=None,
                     modality: Modality | None = None) -> list[tuple[str, dict]]:
    """The (name, params) list a preset runs for a model with ``num_classes`` outputs."""
    presets = (modality or get_modality("vision")).presets
    specs = [(n, dict(p)) for n, p in (attacks if attacks is not None else presets[preset])]
    for name, params in specs:
        if "focus" in params:
            params["focus"] = check_number(params["focus"], "focus", owner=name, low=0, high=1, low_inclusive=False)
        if "n_target_classes" in params:
            params["n_target_classes"] = max(1, min(params["n_target_classes"], num_classes - 1))
    if surrogate is not None and not any(n == "transfer" for n, _ in specs):
        specs.append(("transfer", {"surrogate": surrogate}))
    return specs


def _kind(name: str) -> str:
    return attack_registry.get_class(name).kind


def evaluate(model, x, y: torch.Tensor, threat, preset: str = "quick", *,
             seed: int = 0, batch_size: int = 256, max_minutes: float | None = None, seeds: int = 1,
             attacks: list[tuple[str, dict]] | None = None, surrogate=None, progress: bool = False,
             state_dir=None) -> RobustnessResult:
    """Worst-case accuracy of ``model`` on (x, y) under ``threat``, per sample, over a preset ensemble.

    Args:
      model: logits model. Images: inputs in the threat's bounds (normalization inside the model);
        texts: a robustkit text classifier, ``x`` a list of sentences.
      x, y: (N, ...) inputs (or N sentences) and (N,) labels.
      threat: a ThreatModel (images) or a SubstitutionThreat (texts).
      preset: "quick", "standard" or "thorough" — the modality's ensemble of that name (images:
        PGD-20 / APGD-CE, APGD-T, Square-5000 / more restarts; texts: word / word + char / more candidates).
      seed: base seed of every randomized attack; ``seeds`` > 1 repeats the cascade with seeds
        seed, seed+1, ... and reports the per-sample worst case plus the spread across seeds.
      max_minutes: time budget; attacks (or batches) not reached are listed in ``result.cut``.
      attacks: an explicit [(name, params), ...] ensemble instead of the preset's.
      surrogate: a model to craft transfer attacks on (appended to the ensemble).
      state_dir: a folder for resumable state (:mod:`robustkit.evaluation.resume`): every finished
        chunk is saved there; a re-run of the same evaluation reads them back and gives the same
        per-sample results; a different model, data, threat, ensemble, seeds or batch size is refused.
        The folder is removed when the evaluation completes.

    Models without usable input gradients (quantized, detached, non-differentiable) are audited with
    the black-box attacks only (Square is added if the ensemble has none) and ``result.mode`` says so.
    """
    modality = for_inputs(x)
    if not hasattr(threat, "to_dict") or not hasattr(threat, "with_eps"):
        raise TypeError(f"The 'threat' parameter of evaluate must be a robustkit.ThreatModel (or a "
                        f"SubstitutionThreat for texts). Got {type(threat).__name__} instead.")
    preset = "custom" if attacks is not None else check_preset(preset, modality.presets, "evaluate")
    modality.check_inputs(x, y, threat, "evaluate")
    seed = check_number(seed, "seed", owner="evaluate", low=0, integer=True)
    seeds = check_number(seeds, "seeds", owner="evaluate", low=1, integer=True)
    batch_size = check_number(batch_size, "batch_size", owner="evaluate", low=1, integer=True)
    if max_minutes is not None:
        max_minutes = check_number(max_minutes, "max_minutes", owner="evaluate", low=0, low_inclusive=False)
    y = y.long()
    start = time.perf_counter()
    deadline = None if max_minutes is None else start + 60.0 * max_minutes
    with eval_mode(model):
        logits = modality.logits(model, x, batch_size)
        num_classes = int(logits.shape[1])
        check_labels_fit(y, num_classes)
        probs = logits.softmax(1)
        pred_clean, conf_clean = logits.argmax(1), probs.max(1).values
        clean_correct = pred_clean == y.cpu()
        specs = resolve_ensemble(preset, num_classes, surrogate, attacks, modality)
        notes = []
        mode = " + ".join(sorted({_kind(n) for n, _ in specs}, reverse=True))
        if modality.continuous:
            k = min(64, x.shape[0])
            health = gradient_health(model, x[:k], y[:k], batch_size)
            if not health["differentiable"] or health["zero_share"] + health["nonfinite_share"] >= 0.5:
                mode = "black-box only"
                notes.append(f"Input gradients are unusable (differentiable={health['differentiable']}, zero on "
                             f"{health['zero_share']:.0%}, non-finite on {health['nonfinite_share']:.0%} of samples): "
                             "white-box attacks are skipped and the model is audited with black-box/transfer attacks.")
                if not any(_kind(n) == "black-box" and n != "noise" for n, _ in specs):
                    specs.append(("square", {"n_queries": 5000}))
        store = None
        if state_dir is not None:
            from .resume import AuditState, weights_fingerprint
            store = AuditState(state_dir, {
                "model": weights_fingerprint(model), "data": modality.fingerprint(x, y), "threat": threat.to_dict(),
                "ensemble": json.loads(json.dumps(specs, default=lambda o: type(o).__name__)), "mode": mode,
                "seeds": [seed + k for k in range(seeds)], "batch_size": batch_size})
        state = CascadeState(modality=modality, model=model, x=x, y=y, threat=threat, batch_size=batch_size,
                             mode=mode, deadline=deadline, progress=progress, robust_all=clean_correct.clone(),
                             x_adv=modality.copy(x), broken_by=[None if c else "clean" for c in clean_correct.tolist()],
                             store=store)
        records, per_seed = [], []
        for k in range(seeds):
            robust_k, recs = _cascade(state, specs, seed + k, clean_correct)
            per_seed.append(float(robust_k.float().mean()))
            state.robust_all &= robust_k
            records.extend(recs)
        adv_logits = modality.logits(model, state.x_adv, batch_size)
    if store is not None:
        if store.resumed_chunks:
            notes.append(f"Resumed: {store.resumed_chunks} chunk(s) were read back from {store.folder}.")
        if not state.cut and rank_world()[0] == 0:
            store.finish()
    adv_probs = adv_logits.softmax(1)
    if state.cut:
        notes.append("The time budget cut part of the ensemble: the robust accuracy is an upper bound.")
    return RobustnessResult(threat=threat, preset=preset, clean_correct=clean_correct, robust=state.robust_all,
                            broken_by=state.broken_by, pred_clean=pred_clean, pred_adv=adv_logits.argmax(1),
                            conf_clean=conf_clean, conf_adv=adv_probs.max(1).values, y=y.cpu(),
                            num_classes=num_classes, attacks=records, seeds=[seed + k for k in range(seeds)],
                            per_seed_robust=per_seed, mode=mode, notes=notes, cut=state.cut,
                            seconds=time.perf_counter() - start, x_adv=state.x_adv, modality=modality.name)


def check_labels_fit(y: torch.Tensor, num_classes: int) -> None:
    """Labels outside the model's outputs are a user error, not "unusable gradients"."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"The 'y' parameter of evaluate must hold class indices in [0, {num_classes - 1}] (the "
                         f"model outputs {num_classes} logits). Got values in [{int(y.min())}, {int(y.max())}] "
                         "instead.")


@dataclass
class CascadeState:
    """What the cascade carries across attacks and seeds: the per-sample worst case so far."""

    modality: Modality
    model: object
    x: object
    y: torch.Tensor
    threat: object
    batch_size: int
    mode: str
    deadline: float | None
    progress: bool
    robust_all: torch.Tensor          # (N,) robust against every attack of every seed so far
    x_adv: object                     # per sample: the example that broke it, else the last failed candidate
    broken_by: list                   # per sample: "clean", the first attack that broke it, or None
    cut: list = field(default_factory=list)
    store: object = None              # an AuditState when the evaluation is resumable

    def record(self, idx: torch.Tensor, x_cand, broken: torch.Tensor, name: str) -> None:
        """Keep the candidates of samples ``idx``; the first attack that breaks a sample names it."""
        fresh = self.robust_all[idx]
        newly, keep = broken & fresh, ~broken & fresh
        m = self.modality
        if bool(newly.any()):
            m.put(self.x_adv, idx[newly], m.take(x_cand, newly.nonzero().squeeze(1)))
            for s in idx[newly].tolist():
                self.broken_by[s] = name
        if bool(keep.any()):  # the last (failed) candidate, for the confidence plots
            m.put(self.x_adv, idx[keep], m.take(x_cand, keep.nonzero().squeeze(1)))


def _cascade(state: CascadeState, specs, seed, clean_correct):
    """One pass of the ensemble with one seed: each attack only on the samples still robust in this pass."""
    robust = clean_correct.clone()
    records = []
    for position, (name, params) in enumerate(specs):
        params = dict(params)
        focus = params.pop("focus", None)
        attack = attack_registry.create(name, state.threat, seed=seed, **params)
        rec = {"name": name, "kind": _kind(name), "params": attack.params(), "seed": seed, "n_attacked": 0,
               "n_broken": 0, "seconds": 0.0, "status": "ran"}
        records.append(rec)
        if state.mode == "black-box only" and rec["kind"] == "white-box":
            rec["status"] = "skipped: input gradients unusable"
            continue
        idx = robust.nonzero().squeeze(1)
        t0 = time.perf_counter()
        if focus is not None:
            idx = _focus(state, idx, focus, rec, white_box_ran=any(
                r["kind"] == "white-box" and r["status"].startswith("ran") for r in records[:-1]))
        details = []
        chunks = _run_chunks(state, attack, name, seed, idx, key=f"s{seed}-a{position}")
        for j, b, xa, ok, det in chunks:  # in the global chunk order, whatever rank ran them
            details += det
            rec["n_attacked"] += int(b.numel())
            rec["n_broken"] += int(ok.sum())
            robust[b[ok]] = False
            state.record(b, xa, ok, name)
        done = sum(int(c[1].numel()) for c in chunks)
        if done < idx.numel():
            rec["status"] = f"cut by the time budget after {done} of {idx.numel()} samples"
            state.cut.append({"attack": name, "seed": seed, "attacked": done, "of": int(idx.numel())})
        if details and hasattr(attack, "summarize"):
            rec["details"] = attack.summarize(details)
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        rec["robust_after"] = int(robust.sum())
        log.info("%s (seed %d): broke %d of %d in %.1fs", name, seed, rec["n_broken"], rec["n_attacked"],
                 rec["seconds"])
    return robust, records


def _focus(state: CascadeState, idx: torch.Tensor, share: float, rec: dict, white_box_ran: bool) -> torch.Tensor:
    """The share of the still-robust samples ``idx`` nearest to breaking: the smallest logit margin at their
    best candidate so far (what the white-box attacks before this one left in ``state.x_adv``).

    Why: the margin a white-box attack leaves predicts which samples a black-box attack can still break. On the
    Fashion-MNIST and MNIST Fast-AT models every sample Square-5000 broke after APGD-T was among the 16% with
    the smallest margin (benchmarks/audit_vs_autoattack.py, BENCHMARKS.md), so Square's budget goes to those
    first. Without a white-box attack before it (a model without gradients) there is no such ranking and every
    sample is attacked."""
    rec["focus"] = {"share": share, "candidates": int(idx.numel())}
    if not white_box_ran or idx.numel() == 0:
        rec["focus"]["applied"] = False
        rec["focus"]["why"] = "no white-box attack ran before it: every still-robust sample is attacked"
        return idx
    m = state.modality
    with torch.no_grad():
        logits = m.logits(state.model, m.take(state.x_adv, idx), state.batch_size)
    yb = state.y[idx.to(state.y.device)].cpu()
    margins = attack_registry.margin(logits.float(), yb)
    keep = max(1, math.ceil(share * idx.numel()))
    chosen = margins.argsort(stable=True)[:keep].sort().values  # chunk order stays the sample order
    rec["focus"].update(applied=True, attacked=int(keep), skipped=int(idx.numel() - keep),
                        largest_margin_attacked=round(float(margins[chosen].max()), 4))
    rec["status"] = (f"ran on the {keep} of {idx.numel()} still-robust samples nearest to breaking (focus {share:g}: "
                     "smallest margin after the white-box attacks)")
    return idx[chosen.to(idx.device)]


def _run_chunks(state: CascadeState, attack, name: str, seed: int, idx: torch.Tensor, key: str = "") -> list:
    """Attack the samples ``idx`` in chunks of ``batch_size``: [(chunk number, indices, x_adv, broken,
    per-example details)], sorted by chunk number.

    Under torchrun the chunks are dealt round-robin to the ranks and gathered, so every rank ends with
    the same list as one process: a chunk holds the same samples and its attack the same seed either
    way, hence the same per-sample results whatever the number of processes."""
    m = state.modality
    rank, world = rank_world()
    out = []
    chunks = list(range(0, idx.numel(), state.batch_size))
    for j in tqdm(range(rank, len(chunks), world), desc=f"{name} (seed {seed})",
                  disable=not state.progress or rank != 0, leave=False):
        if state.deadline is not None and time.perf_counter() > state.deadline:
            break
        b = idx[chunks[j]:chunks[j] + state.batch_size]
        saved = state.store.load(f"{key}-c{j}", b, m) if state.store is not None else None
        if saved is not None:  # finished before the audit was stopped: same seed, same samples, same result
            xa, ok, details = saved
            out.append((j, b, xa if world > 1 else m.to_device(xa, getattr(state.x, "device", "cpu")), ok, details))
            continue
        yb = state.y[b.to(state.y.device)]
        xa = attack(state.model, m.take(state.x, b), yb)
        ok = m.logits(state.model, xa, state.batch_size).argmax(1) != yb.cpu()  # verified here, whatever it claims
        details = list(getattr(attack, "last_results", None) or [])
        if state.store is not None:
            state.store.save(f"{key}-c{j}", b, xa, ok, details, m)
        out.append((j, b, m.to_device(xa, "cpu") if world > 1 else xa, ok, details))
    if world > 1:
        out = [c for part in gather_objects(out) for c in part]
    return sorted(out, key=lambda c: c[0])


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
    modality = for_inputs(x)
    check_preset(preset, modality.presets, "sweep_eps")
    if not hasattr(threat, "with_eps"):
        raise TypeError(f"The 'threat' parameter of sweep_eps must be a robustkit.ThreatModel (or a "
                        f"SubstitutionThreat for texts). Got {type(threat).__name__} instead.")
    t0 = time.perf_counter()
    rows, cut, done = [], [], []
    for e in sorted(eps):
        left = None if max_minutes is None else max_minutes - (time.perf_counter() - t0) / 60
        if left is not None and left <= 0:
            cut.append(e)
            continue
        if e == 0:
            with eval_mode(model):
                correct = modality.logits(model, x, batch_size).argmax(1) == y.cpu()
            rows.append(accuracy_with_ci(int(correct.sum()), int(y.numel())))
            done.append(e)
            continue
        res = evaluate(model, x, y, threat.with_eps(e), preset, seed=seed, batch_size=batch_size,
                       max_minutes=left, progress=progress)
        rows.append(res.to_dict(per_sample=False)["robust_accuracy"])
        done.append(e)
        cut.extend([e] if res.cut else [])
    return {"eps": done, "robust_accuracy": rows, "preset": preset, "norm": threat.to_dict()["norm"], "seed": seed,
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


def attack_dataset(model, x, y: torch.Tensor, attack, *, batch_size: int = 500, progress: bool = False,
                   details: list | None = None) -> tuple[object, torch.Tensor, torch.Tensor]:
    """Run one attack over a dataset in batches: (x_adv, clean predictions, adversarial predictions),
    predictions on the CPU. Works for image tensors and lists of sentences alike. ``details``, when
    given, collects the per-example records of attacks that keep them (``attack.last_results``)."""
    modality = for_inputs(x)
    batch_size = check_number(batch_size, "batch_size", owner="attack_dataset", low=1, integer=True)
    n = modality.size(x)
    x_adv, pc, pa = modality.copy(x), [], []
    with eval_mode(model):
        for i in tqdm(range(0, n, batch_size), desc=attack.name, disable=not progress, leave=False):
            idx = torch.arange(i, min(i + batch_size, n))
            xb, yb = modality.take(x, idx), y[idx.to(y.device)]
            xa = attack(model, xb, yb)
            if details is not None:
                details += getattr(attack, "last_results", None) or []
            modality.put(x_adv, idx, xa)
            pc.append(modality.logits(model, xb, batch_size).argmax(1))
            pa.append(modality.logits(model, xa, batch_size).argmax(1))
    return x_adv, torch.cat(pc), torch.cat(pa)
