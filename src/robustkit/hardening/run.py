"""``harden(source, ...)``: prune and/or quantize a trained model, fine-tune it adversarially, save it as
a new run folder and re-audit the original and the hardened model side by side.

The source run folder is only read: the new run goes to ``<out_dir>/<name>/`` (named and placed as
``train`` places runs) and the source folder's files are hashed before and after to prove it.

Example::

    doc = harden("runs/fmnist-fast", prune=0.5, finetune="fast", epochs=2, audit_preset="standard")
    doc["hardened"]["audit"]["robust_accuracy"], doc["run_dir"]
"""
from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from pathlib import Path

import torch

from .._validation import check_choice, check_number
from ..checkpoint import atomic_write_bytes, load_model, resolve, save_model, sha256_file
from .family import float_model, hardened_spec
from .prune import (check_sparsity, magnitude_prune, make_permanent, prunable_layers, structured_prune,
                    weight_sparsity)
from .quantize import MODES, _convert, prepare_qat, quantize_dynamic_int8, quantize_static, resolve_mode

log = logging.getLogger(__name__)
HARDEN_FORMAT = "robustkit-harden"


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> hash)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def check_options(*, prune, structured, quantize, finetune, epochs, audit_preset, audit_limit, eval_limit,
                  threads) -> None:
    """Every option checked before any file is read or written (clear errors naming the argument)."""
    if prune is None and quantize is None:
        raise ValueError("Nothing to do: give --prune SPARSITY and/or --quantize MODE.")
    if prune is not None:
        check_sparsity(prune, "prune", "harden")
    elif structured:
        raise ValueError("The 'structured' option needs --prune RATIO (the share of channels to remove).")
    if quantize is not None:
        check_choice(quantize, "quantize", MODES, owner="harden")
        if quantize == "int8-qat" and not finetune:
            raise ValueError("The 'quantize' mode 'int8-qat' is quantization-aware fine-tuning: give --finetune METHOD "
                             "(e.g. fast) and --epochs N.")
    if finetune is not None:
        from ..training.objectives import get_objective_class
        get_objective_class(finetune)  # unknown names fail here, with suggestions
    check_number(epochs, "epochs", owner="harden", low=1, integer=True)
    if audit_preset not in ("none", "quick", "standard", "thorough"):
        raise ValueError(f"The 'audit_preset' parameter of harden must be one of ['none', 'quick', 'standard', "
                         f"'thorough']. Got {audit_preset!r} instead.")
    for name, v in (("audit_limit", audit_limit), ("eval_limit", eval_limit)):
        if v is not None:
            check_number(v, name, owner="harden", low=1, integer=True)
    check_number(threads, "threads", owner="harden", low=1, integer=True)


def default_name(source_dir: Path, prune, structured, quantize, finetune) -> str:
    parts = [source_dir.name]
    if prune is not None:
        parts.append(f"{'s' if structured else 'p'}{round(100 * prune)}")
    if finetune:
        parts.append(f"ft-{finetune}")
    if quantize:
        parts.append(quantize)
    return "-".join(parts)


def _train_config(meta: dict):
    from ..config import TrainConfig
    conf = (meta.get("extra") or {}).get("config")
    if conf:
        return TrainConfig.from_dict(dict(conf), source=f"{meta.get('path')} (saved config)")
    data = (meta.get("data") or {}).get("name", "digits")
    return TrainConfig(data=data)


def _load_data(meta: dict, modality, data_dir, seed: int, cfg):
    spec = meta.get("data") or {}
    name = spec.get("name")
    if not name:
        raise ValueError("The source checkpoint records no dataset; harden needs its data (calibration, fine-tuning, "
                         "audit).")
    options = {"variant": spec["variant"]} if spec.get("variant") else {}
    return name, modality.load(name, data_dir=data_dir if data_dir is not None else cfg.data_dir, seed=seed, **options)


def evaluate_variant(model, modality, x, y, threat, *, pgd_steps: int | None, batch_size: int = 256, seed: int = 0,
                     progress: bool = False) -> dict:
    """Clean accuracy on (x, y) and, for images, robust accuracy under PGD-``pgd_steps`` (crafted on the float
    twin and transferred when the model has no gradients; the doc says which)."""
    from ..evaluation import evaluate
    from ..evaluation.audit import float_twin
    from ..evaluation.stats import accuracy_with_ci
    with torch.no_grad():
        correct = modality.logits(model, x, batch_size).argmax(1) == y.cpu()
    out = {"n": int(y.numel()), "clean_accuracy": accuracy_with_ci(int(correct.sum()), int(y.numel()))}
    if pgd_steps and modality.continuous and threat is not None:
        twin = float_twin(model)
        if twin is None:
            attacks, how = [("pgd", {"steps": pgd_steps})], f"PGD-{pgd_steps} (white-box)"
        else:
            attacks = [("transfer", {"surrogate": twin, "attack": "pgd", "attack_params": {"steps": pgd_steps}})]
            how = f"PGD-{pgd_steps} crafted on the float twin, transferred (the model has no gradients)"
        res = evaluate(model, x, y, threat, attacks=attacks, seed=seed, batch_size=batch_size, progress=progress)
        out["pgd"] = {"attack": how, "robust_accuracy": res.to_dict(per_sample=False)["robust_accuracy"]}
    return out


def _latency_inputs(modality, model, x, sizes=(1, 256)):
    out = {}
    for bs in sizes:
        idx = torch.arange(min(bs, modality.size(x)))
        xb = modality.take(x, idx)
        out[bs] = model.encode(xb) if not modality.continuous else xb
    return out


def harden(source, *, prune: float | None = None, structured: bool = False, quantize: str | None = None,
           finetune: str | None = None, epochs: int = 2, lr: float = 1e-3, audit_preset: str = "standard",
           audit_attacks: list | None = None, audit_limit: int | None = 1000, eval_limit: int | None = None,
           pgd_steps: int = 20, eps: float | None = None, name: str | None = None, out_dir: str | None = None,
           data_dir: str | None = None, seed: int = 0, overwrite: bool = False, threads: int = 1,
           latency_repeats: int = 20, calibration_size: int = 1024, which: str = "best", reference: dict | None = None,
           progress: bool = False) -> dict:
    """Harden the model of run folder (or checkpoint) ``source``; returns the harden document (harden.json).

    ``reference`` (the ``original`` entry of an earlier harden document of the same source, options and
    data) skips re-measuring the original model's accuracy and audit.
    """
    check_options(prune=prune, structured=structured, quantize=quantize, finetune=finetune, epochs=epochs,
                  audit_preset=audit_preset, audit_limit=audit_limit, eval_limit=eval_limit, threads=threads)
    check_choice(which, "which", ("best", "last"), owner="harden")
    from ..modality import for_checkpoint
    t_start = time.perf_counter()
    src = Path(source)
    src_file = src / f"{which}.safetensors" if src.is_dir() and (src / f"{which}.safetensors").is_file() \
        else resolve(src)
    src_dir = src_file.parent
    before = folder_hashes(src_dir)
    model, meta = load_model(src_file)
    modality = for_checkpoint(meta)
    if getattr(model, "robustkit_differentiable", True) is False:
        raise ValueError(f"The source model {str(src_file)!r} is already quantized (int8); prune or quantize its float "
                         f"parent instead ({(meta.get('extra') or {}).get('hardening', {}).get('parent', {}).get('path')}).")
    if quantize is not None:
        quantize = resolve_mode(quantize, modality.name)
    if structured and not modality.continuous:
        raise ValueError("Structured pruning supports image models (conv networks) only; use unstructured --prune "
                         "for a text model.")
    cfg = _train_config(meta)
    run_dir = Path(out_dir or cfg.out_dir or "runs") / (name or default_name(src_dir, prune, structured, quantize,
                                                                                 finetune))
    if run_dir.resolve() == src_dir.resolve():
        raise ValueError(f"The hardened run folder {str(run_dir)!r} is the source run folder; harden never writes "
                         "into its source. Pass another --name.")
    if (run_dir / "best.safetensors").is_file() and not overwrite:
        raise FileExistsError(f"Run folder {run_dir} already holds a model. Use --overwrite to replace it, or "
                              "another --name.")
    data_name, ds = _load_data(meta, modality, data_dir, seed, cfg)
    threat = modality.audit_threat(eps, None, meta.get("threat"), ds)
    train_threat = modality.training_threat(cfg.norm, cfg.eps, ds)
    x_test, y_test = modality.eval_split(ds, eval_limit)
    steps: list[dict] = []
    hardened = copy.deepcopy(model)
    shapes = None
    x_train = y_train = None

    def training_data():
        nonlocal x_train, y_train
        if x_train is None:
            x_train, y_train = modality.training_split(ds, cfg)[:2]
        return x_train, y_train

    # 1. pruning (masks kept while fine-tuning, then folded into the weights)
    if prune is not None:
        if structured:
            example = modality.take(x_test, torch.arange(1))
            info = structured_prune(hardened, prune, example)
            shapes = info["shapes"]
        else:
            info = magnitude_prune(hardened, prune, permanent=finetune is None or quantize == "int8-qat")
        steps.append({"step": "prune", **{k: v for k, v in info.items() if k != "shapes"}})
    # 2. adversarial fine-tuning (for QAT it runs on the fake-quantized model below)
    if finetune and quantize != "int8-qat":
        xt, yt = training_data()
        ft = _finetune(hardened, modality, xt, yt, train_threat, finetune, epochs, cfg, lr, seed, progress)
        make_permanent(hardened)
        steps.append({"step": "finetune", **ft})
    if prune is not None:
        steps[0]["measured_sparsity"] = weight_sparsity(hardened)["sparsity"]
    # 3. quantization
    quant_doc = None
    if quantize == "int8-static":
        xt, _ = training_data()
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(xt.shape[0], generator=g)[:calibration_size]
        hardened = quantize_static(hardened, xt[idx])
        quant_doc = {"flow": "int8-static", "backend": "x86"}
        steps.append({"step": "quantize", "mode": quantize, "calibration_samples": int(idx.numel()),
                      "tool": "torch.ao.quantization eager prepare/convert (x86 backend), MinMax/histogram "
                              "observers, per-channel int8 weights"})
    elif quantize == "int8-dynamic":
        hardened = quantize_dynamic_int8(hardened)
        quant_doc = {"flow": "int8-dynamic", "backend": "x86"}
        steps.append({"step": "quantize", "mode": quantize, "tool": "torch.ao.quantization.quantize_dynamic "
                                                                     "({nn.Linear: per_channel_dynamic_qconfig}, qint8)"})
    elif quantize == "int8-qat":
        xt, yt = training_data()
        zeros = [(m.weight, m.weight != 0) for _, m in prunable_layers(hardened)] if prune is not None else []
        w = prepare_qat(hardened)
        kept = {id(p) for p in w.parameters()}
        if any(id(p) not in kept for p, _ in zeros):
            raise RuntimeError("prepare_qat replaced the pruned weights; cannot keep them at zero (a bug).")
        ft = _finetune(w, modality, xt, yt, train_threat, finetune, epochs, cfg, lr, seed, progress, keep_zero=zeros)
        steps.append({"step": "finetune", "quantization_aware": True, **ft})
        hardened = _convert(w)
        quant_doc = {"flow": "int8-static", "backend": "x86"}
        steps.append({"step": "quantize", "mode": quantize, "tool": "torch.ao.quantization prepare_qat/convert "
                                                                     "(x86 backend, fake-quant training)"})
    spec = hardened_spec(meta["model"], shapes=shapes, quantization=quant_doc)
    hardened.robustkit_spec = spec
    if quant_doc:
        hardened.set_twin_builder(lambda: float_model(spec))

    # 4. the new run folder: checkpoint (safetensors), the parent's config, then reload through the loader
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("best.safetensors", "last.safetensors", "harden.json", "harden.md", "harden.html", "audit.json"):
        (run_dir / stale).unlink(missing_ok=True)
    hardening = {"steps": steps, "parent": {"path": str(src_file), "sha256": meta["sha256"],
                                            "model": meta["model"].get("name")},
                 "options": {"prune": prune, "structured": structured, "quantize": quantize, "finetune": finetune,
                             "epochs": epochs if finetune else None, "lr": lr if finetune else None, "seed": seed},
                 "created": dt.datetime.now(dt.timezone.utc).isoformat()}
    extra = {k: v for k, v in (meta.get("extra") or {}).items() if k in ("config",)}
    save_model(run_dir / "best.safetensors", hardened, model_spec=spec, data=meta.get("data"),
               threat=meta.get("threat"), method=meta.get("method"), extra={**extra, "hardening": hardening})
    atomic_write_bytes(run_dir / "last.safetensors", (run_dir / "best.safetensors").read_bytes())
    if (src_dir / "config.yaml").is_file():
        atomic_write_bytes(run_dir / "config.yaml", (src_dir / "config.yaml").read_bytes())
    loaded, new_meta = load_model(run_dir / "best.safetensors")
    with torch.no_grad():
        k = min(64, modality.size(x_test))
        xb = modality.take(x_test, torch.arange(k))
        diff = float((modality.logits(hardened, xb, 64) - modality.logits(loaded, xb, 64)).abs().max())
    if diff > 1e-4:
        raise RuntimeError(f"The saved hardened model does not reproduce the in-memory one (max logit difference "
                           f"{diff:.3g}); this is a bug, please report it.")

    # 5. side-by-side measurements (original from the source checkpoint, hardened as loaded)
    doc = {"format": HARDEN_FORMAT, "version": 1, "run_dir": str(run_dir), "source": str(src_file),
           "modality": modality.name, "data": {"name": data_name, "eval_n": modality.size(x_test)},
           "threat": threat.to_dict(), "threat_description": modality.describe_threat(threat),
           "hardening": hardening, "reload_max_logit_diff": diff}
    lat = _measure_latency(model, loaded, modality, x_test, threads, latency_repeats)
    doc["latency"] = lat
    sides = {}
    for side, m, path in (("original", model, src_file), ("hardened", loaded, run_dir / "best.safetensors")):
        from .measure import file_size, parameter_stats
        entry = {"checkpoint": str(path), "file_bytes": file_size(path), **parameter_stats(m),
                 "differentiable": getattr(m, "robustkit_differentiable", True) is not False,
                 "latency_s": {str(bs): row[side]["median_s"] for bs, row in lat["batch"].items()}}
        if side == "original" and reference is not None:
            entry.update({k: reference[k] for k in ("eval", "audit") if k in reference})
        else:
            entry["eval"] = evaluate_variant(m, modality, x_test, y_test, threat, pgd_steps=pgd_steps, seed=seed,
                                             progress=progress)
            entry["audit"] = _audit(m, modality, ds, threat, audit_preset, audit_attacks, audit_limit, seed,
                                    progress, meta if side == "original" else new_meta, data_name,
                                    run_dir if side == "hardened" else None)
        sides[side] = entry
    doc.update(sides)
    doc["comparison"] = compare(doc)
    # top-level scalars: what a model card shows when it keeps only those (robustkit serve)
    doc["applied"] = applied_text(steps)
    doc["parent_sha256"] = meta["sha256"]
    doc["clean_accuracy_change_points"] = doc["comparison"]["clean_accuracy_points"]
    doc["robust_accuracy_change_points"] = (doc["comparison"]["audit_robust_accuracy_points"]
                                            if doc["comparison"]["audit_robust_accuracy_points"] is not None
                                            else doc["comparison"]["pgd_robust_accuracy_points"])
    doc["seconds"] = round(time.perf_counter() - t_start, 1)
    after = folder_hashes(src_dir)
    if after != before:
        raise RuntimeError(f"The source run folder {src_dir} changed while hardening; this is a bug, please report it.")
    doc["source_folder_unchanged"] = True
    from .report import write_harden_report
    write_harden_report(doc, run_dir)
    return doc


def _finetune(model, modality, x, y, threat, method, epochs, cfg, lr, seed, progress, keep_zero=None):
    from .finetune import finetune as ft
    return ft(model, modality, x, y, threat, method=method, epochs=epochs, cfg=cfg, lr=lr, seed=seed,
              progress=progress, keep_zero=keep_zero)


def _measure_latency(original, hardened, modality, x, threads, repeats) -> dict:
    from .measure import latency
    inputs = _latency_inputs(modality, original, x)
    for m in (original, hardened):
        m.eval()
    return latency({"original": original, "hardened": hardened}, inputs, repeats=repeats, threads=threads)


def _audit(model, modality, ds, threat, preset, attacks, limit, seed, progress, meta, data_name,
           out_dir) -> dict | None:
    """The audit of one side: the whole JSON document is written (hardened side) and a summary kept."""
    if preset == "none" and not attacks:
        return None
    from ..evaluation import run_audit
    x, y = modality.eval_split(ds, limit)
    doc = run_audit(model, x, y, threat, preset=preset if preset != "none" else "quick", attacks=attacks, seed=seed,
                    class_names=ds.class_names, progress=progress,
                    # the gradient-masking checks attack the model with gradients: moot without them
                    sanity=getattr(model, "robustkit_differentiable", True) is not False,
                    checkpoint={"path": meta.get("path"), "sha256": meta.get("sha256"), "model": meta.get("model"),
                                "method": meta.get("method"), "threat": meta.get("threat")},
                    data={"name": data_name, "split": "test", "limit": limit})
    ev = doc["evaluation"]
    inner = iter(doc.get("transferred_from_twin") or [])
    summary = {"preset": preset if not attacks else "custom: " + ", ".join(n for n, _ in attacks), "n": ev["n"],
               "mode": ev["mode"], "clean_accuracy": ev["clean_accuracy"], "robust_accuracy": ev["robust_accuracy"],
               "notes": ev["notes"],
               "attacks": [{k: a.get(k) for k in ("name", "kind", "status", "n_attacked", "n_broken", "seconds")}
                           | ({"crafted_with": next(inner, "?")} if a["name"] == "transfer" else {})
                           for a in ev["attacks"]],
               "verdict": doc["verdict"]["status"]}
    if out_dir is not None:
        summary["_doc"] = doc  # written as the run's audit report by write_harden_report
    return summary


def applied_text(steps: list[dict]) -> str:
    """One line: what was done, e.g. 'prune 90% (global-magnitude); finetune fast x2 epochs; quantize int8-static'."""
    out = []
    for s in steps:
        if s["step"] == "prune":
            share = s.get("target_sparsity", s.get("ratio"))
            out.append(f"prune {100 * share:.0f}% ({s['kind']})")
        elif s["step"] == "finetune":
            qat = " (QAT)" if s.get("quantization_aware") else ""
            out.append(f"finetune {s['method']} x{s['epochs']} epochs{qat}")
        else:
            out.append(f"quantize {s['mode']}")
    return "; ".join(out)


def compare(doc: dict) -> dict:
    """Hardened minus original, in points (accuracies) and ratios (size, latency)."""
    o, h = doc["original"], doc["hardened"]

    def val(side, *path):
        cur = side
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return None
            cur = cur[p]
        return cur

    out = {}
    for key, path in (("clean_accuracy_points", ("eval", "clean_accuracy", "value")),
                      ("pgd_robust_accuracy_points", ("eval", "pgd", "robust_accuracy", "value")),
                      ("audit_clean_accuracy_points", ("audit", "clean_accuracy", "value")),
                      ("audit_robust_accuracy_points", ("audit", "robust_accuracy", "value"))):
        a, b = val(o, *path), val(h, *path)
        out[key] = None if a is None or b is None else round(100 * (b - a), 2)
    out["file_size_ratio"] = o["file_bytes"] / h["file_bytes"] if o.get("file_bytes") and h.get("file_bytes") else None
    out["speedup"] = {bs: row.get("speedup") for bs, row in doc["latency"]["batch"].items()}
    out["nonzero_share"] = {"original": o["nonzero_share"], "hardened": h["nonzero_share"]}
    return out
