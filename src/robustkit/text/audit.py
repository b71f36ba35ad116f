"""The text audit: clean accuracy, accuracy under each word/character attack, attack success rate,
average share of words perturbed, queries per example, and example original/adversarial sentences.

JSON first (DESIGN decision 6): :func:`audit_text` returns the document; :func:`render_text_report`
writes ``audit.json`` and renders ``audit.md`` and ``audit.html`` from it.
"""
from __future__ import annotations

import html
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import torch

from .._validation import check_choice, check_number
from ..checkpoint import atomic_write_text, load_model, resolve
from . import models as _models  # noqa: F401 - registers the "text" checkpoint family
from .char_attack import CharAttack
from .data import load_text_dataset
from .word_attack import WordSubstitutionAttack, check_constraints

log = logging.getLogger(__name__)

ATTACKS = {"word": WordSubstitutionAttack, "char": CharAttack}


def create_text_attack(name: str, **params):
    """``word`` (synonym substitution) or ``char`` (DeepWordBug-like edits)."""
    check_choice(name, "attack", list(ATTACKS), owner="create_text_attack")
    return ATTACKS[name](**params)


def load_text_model(path: str | os.PathLike, checkpoint: str = "last"):
    """A text checkpoint (file) or run folder (its ``last`` or ``best`` checkpoint) -> (model, metadata)."""
    check_choice(checkpoint, "checkpoint", ("last", "best"), owner="load_text_model")
    p = Path(path)
    if p.is_dir() and (p / f"{checkpoint}.safetensors").is_file():
        p = p / f"{checkpoint}.safetensors"
    model, meta = load_model(resolve(p))
    if (meta.get("model") or {}).get("family") != "text":
        raise ValueError(f"{str(path)!r} is not a text model checkpoint (model family "
                         f"{(meta.get('model') or {}).get('family')!r}).")
    return model, meta


def summarize(results, n_total: int) -> dict:
    attacked = [r for r in results if not r.skipped]
    wins = [r for r in attacked if r.success]
    robust = sum(1 for r in attacked if not r.success)
    mean = lambda xs: (sum(xs) / len(xs)) if xs else None  # noqa: E731
    return {"accuracy": robust / max(1, n_total), "n": n_total, "n_attacked": len(attacked), "n_success": len(wins),
            "attack_success_rate": len(wins) / len(attacked) if attacked else None,
            "mean_share_changed": mean([r.share_changed for r in wins]) or 0.0,
            "max_share_changed": max((r.share_changed for r in wins), default=0.0),
            "mean_words_changed": mean([len(r.changed) for r in wins]) or 0.0,
            "mean_queries": mean([r.queries for r in attacked]) or 0.0,
            "mean_similarity": mean([r.similarity for r in wins if r.similarity is not None])}


def audit_text(model_path: str | os.PathLike, data: str | None = None, data_dir: str | None = None, *,
               limit: int | None = 200, attacks: Sequence[str] = ("word", "char"), attack_params: dict | None = None,
               seed: int = 0, checkpoint: str = "last", examples: int = 10, model=None) -> dict:
    """Audit a text model on its dataset's evaluation split (SST-2: dev), first ``limit`` texts.

    ``attack_params`` maps attack names to keyword arguments (e.g. ``{"word": {"max_share": 0.2}}``).
    ``model`` may be passed directly (then ``model_path`` only labels the report).
    """
    if limit is not None:
        check_number(limit, "limit", owner="audit_text", low=1, integer=True)
    check_number(examples, "examples", owner="audit_text", low=0, integer=True)
    for a in attacks:
        check_choice(a, "attacks", list(ATTACKS), owner="audit_text")
    if model is None:
        model, meta = load_text_model(model_path, checkpoint)
    else:
        meta = {"path": str(model_path), "data": None, "method": None, "threat": None}
    data_doc = meta.get("data") or {}
    name = data or data_doc.get("name") or "sst2"
    opts = {"variant": data_doc["variant"]} if name == "sst2" and data_doc.get("variant") else {}
    ds = load_text_dataset(name, data_dir=data_dir, **opts)
    n = len(ds.test_texts) if limit is None else min(limit, len(ds.test_texts))
    texts, labels = ds.test_texts[:n], ds.test_labels[:n].tolist()
    t0 = time.perf_counter()
    probs = model.predict_proba(texts)
    clean = float((probs.argmax(-1) == torch.tensor(labels)).float().mean()) if n else float("nan")
    doc = {"kind": "text-audit", "model": {"path": meta.get("path"), "sha256": meta.get("sha256"),
                                           "method": meta.get("method"), "threat": meta.get("threat"),
                                           "spec_name": (meta.get("model") or {}).get("name")},
           "data": {"name": name, "split": "dev", "n": n, "class_names": ds.class_names},
           "seed": seed, "clean_accuracy": clean, "clean_seconds": time.perf_counter() - t0,
           "attacks": {}, "examples": {}}
    for a in attacks:
        params = dict((attack_params or {}).get(a, {}))
        atk = create_text_attack(a, **params)
        t0 = time.perf_counter()
        results = atk.attack(model, texts, labels, seed=seed)
        seconds = time.perf_counter() - t0
        summary = summarize(results, n)
        violations = [(i, p) for i, r in enumerate(results) for p in
                      check_constraints(r, max_share=atk.max_share, stop_words=atk.stop_words,
                                        min_similarity=atk.min_similarity)]
        summary.update({"params": atk.params(), "seconds": seconds, "constraint_violations": len(violations)})
        if violations:
            log.warning("%s attack: %d constraint violations, first: %s", a, len(violations), violations[0])
        doc["attacks"][a] = summary
        wins = [r for r in results if r.success]
        doc["examples"][a] = [{**r.to_dict()} for r in wins[:examples]]
        log.info("%s attack: accuracy %.4f -> %.4f in %.0fs", a, clean, summary["accuracy"], seconds)
    return doc


# -- rendering ------------------------------------------------------------------------------------------
def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f}%" if pct else (f"{v:.4g}" if isinstance(v, float) else str(v))


def _rows(doc: dict) -> list[list[str]]:
    rows = [["clean", _fmt(doc["clean_accuracy"], True), "–", "–", "–"]]
    for name, a in doc["attacks"].items():
        rows.append([name, _fmt(a["accuracy"], True), _fmt(a["attack_success_rate"], True),
                     _fmt(a["mean_share_changed"], True), f"{a['mean_queries']:.1f}"])
    return rows


HEADER = ["attack", "accuracy", "attack success rate", "mean share of words changed", "queries / example"]


def render_markdown(doc: dict) -> str:
    names = doc["data"]["class_names"]
    lines = [f"# Text robustness audit", "", f"- model: `{doc['model']['path']}`",
             f"- data: {doc['data']['name']} {doc['data']['split']} split, first {doc['data']['n']} texts; "
             f"seed {doc['seed']}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(doc)]
    for name, a in doc["attacks"].items():
        lines += ["", f"## {name} attack", "", f"parameters: `{json.dumps(a['params'])}`; "
                  f"constraint violations: {a['constraint_violations']}; {a['seconds']:.1f}s", ""]
        if doc["examples"].get(name):
            lines += ["| original | adversarial | prediction |", "|---|---|---|"]
            for e in doc["examples"][name]:
                esc = lambda s: s.replace("|", "\\|")  # noqa: E731
                lines.append(f"| {esc(e['original'])} | {esc(_mark_md(e))} | {names[e['pred_original']]} → "
                             f"{names[e['pred_adversarial']]} |")
    return "\n".join(lines) + "\n"


def _mark_md(e: dict) -> str:
    words = e["adversarial"].split()
    for pos, _, _ in e["changed"]:
        if pos < len(words):
            words[pos] = f"**{words[pos]}**"
    return " ".join(words)


def render_html(doc: dict) -> str:
    names = doc["data"]["class_names"]
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Text robustness audit</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}mark{background:#fdd}</style></head><body>",
             "<h1>Text robustness audit</h1>",
             f"<p>model: <code>{esc(str(doc['model']['path']))}</code><br>data: {esc(doc['data']['name'])} "
             f"{esc(doc['data']['split'])} split, first {doc['data']['n']} texts; seed {doc['seed']}</p>",
             "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in HEADER) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in _rows(doc)]
    parts.append("</table>")
    for name, a in doc["attacks"].items():
        parts.append(f"<h2>{esc(name)} attack</h2><p>parameters: <code>{esc(json.dumps(a['params']))}</code>; "
                     f"constraint violations: {a['constraint_violations']}; {a['seconds']:.1f}s</p>")
        if doc["examples"].get(name):
            parts.append("<table><tr><th>original</th><th>adversarial</th><th>prediction</th></tr>")
            for e in doc["examples"][name]:
                words = [esc(w) for w in e["adversarial"].split()]
                for pos, _, _ in e["changed"]:
                    if pos < len(words):
                        words[pos] = f"<mark>{words[pos]}</mark>"
                parts.append(f"<tr><td>{esc(e['original'])}</td><td>{' '.join(words)}</td>"
                             f"<td>{esc(names[e['pred_original']])} → {esc(names[e['pred_adversarial']])}</td></tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_text_report(doc: dict, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write audit.json, audit.md and audit.html into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "audit.json", "markdown": out / "audit.md", "html": out / "audit.html"}
    atomic_write_text(files["json"], json.dumps(doc, indent=2))
    atomic_write_text(files["markdown"], render_markdown(doc))
    atomic_write_text(files["html"], render_html(doc))
    return {k: str(v) for k, v in files.items()}
