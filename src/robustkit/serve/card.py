"""The model card: what the model is, what it was trained and audited for, read from its run folder.

Sources, all read once at start-up (never a path from a request): the checkpoint's metadata
(architecture, data spec, method, threat, sha256), the run folder's ``audit.json`` (the last audit's
headline numbers with their 95% confidence intervals) and ``harden.json`` (hardening applied).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

_SPEC_KEYS = ("name", "family", "kwargs", "input_shape", "num_classes", "head", "max_length", "freeze_layers", "lora",
              "mean", "std")
_HARDEN_KEYS = ("hardening", "comparison", "threat", "threat_description", "reload_max_logit_diff")
_DATA_KEYS = ("name", "modality", "input_shape", "num_classes", "class_names", "bounds", "mean", "std")


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        log.warning("model card: cannot read %s (%s)", path, err)
        return None
    return doc if isinstance(doc, dict) else None


def _audit_summary(doc: dict | None, sha256: str) -> dict | None:
    if doc is None:
        return None
    ev = doc.get("evaluation") or {}
    ci = lambda a: None if not isinstance(a, dict) else {"value": a.get("value"), "ci95": a.get("ci95")}  # noqa: E731
    audited = ((doc.get("provenance") or {}).get("checkpoint") or {}).get("sha256")
    return {"created": doc.get("created"), "preset": doc.get("preset") or ev.get("preset"),
            "threat": doc.get("threat"), "n": ev.get("n"), "clean_accuracy": ci(ev.get("clean_accuracy")),
            "robust_accuracy": ci(ev.get("robust_accuracy")), "verdict": (doc.get("verdict") or {}).get("status"),
            "checkpoint_sha256": audited,
            # An audit of another checkpoint (e.g. `last` while serving `best`) must not vouch for this one.
            "matches_served_checkpoint": None if audited is None else audited == sha256}


def _hardening(run_dir: Path | None, meta: dict) -> dict | None:
    doc = _read_json(run_dir / "harden.json") if run_dir else None
    if doc is None:
        extra = meta.get("extra") or {}
        doc = extra.get("hardening") or meta.get("hardening")
    if not doc:
        return None
    # harden.json (robustkit.hardening) holds the steps and the before/after comparison; its file paths are
    # the server's business, not the client's.
    picked = {k: doc[k] for k in _HARDEN_KEYS if k in doc}
    doc = picked or {k: v for k, v in doc.items() if k not in ("run_dir", "source", "checkpoint", "path")}
    text = json.dumps(doc, default=str)
    # Keep the card small: a long report is summarized by its top-level scalar fields.
    return doc if len(text) <= 16_000 else {k: v for k, v in doc.items() if isinstance(v, (str, int, float, bool))}


def build_card(lm) -> dict:
    meta = lm.meta
    spec = meta.get("model") or {}
    data = meta.get("data") or {}
    method = meta.get("method") or {}
    threat = meta.get("threat") or {}
    sha = meta.get("sha256")
    return {
        "name": lm.name,
        "modality": lm.modality.name,
        "architecture": spec.get("name") or (spec.get("base") or {}).get("name"),
        "model_family": spec.get("family"),
        "model_spec": {k: spec[k] for k in _SPEC_KEYS if k in spec},
        "data": {k: data[k] for k in _DATA_KEYS if k in data},
        "class_names": lm.class_names,
        "training": {"method": method.get("name"), "eps": threat.get("eps"), "norm": threat.get("norm"),
                     "args": method.get("args")},
        "threat": threat or None,
        "audit": _audit_summary(_read_json(lm.run_dir / "audit.json") if lm.run_dir else None, sha),
        "hardening": _hardening(lm.run_dir, meta),
        "checkpoint": {"file": Path(meta.get("path", "")).name, "sha256": sha},
        "serving": {"suspicion_signal": lm.signal_name(), "suspicion_threshold": lm.suspicion.threshold,
                    "input": {"datatype": lm.codec.datatype, "shape": lm.codec.oip_shape()},
                    "certify": bool(lm.modality.continuous)},
    }
