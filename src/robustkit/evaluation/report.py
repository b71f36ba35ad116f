"""Render an audit JSON document as Markdown and as self-contained HTML (PNG plots embedded as base64).

Everything shown is read from the JSON (DESIGN decision 6). ``write_report(doc, folder)`` writes
``audit.json``, ``audit.md`` (plots beside it in ``audit_plots/``) and ``audit.html``.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..checkpoint import atomic_write_bytes, atomic_write_text
from ._common import gallery_kind
from .audit import AUDIT_FORMAT

_TITLES = {"eps_curve": "Robust accuracy vs eps", "precision_recall": "Per-class precision and recall",
           "confusion_adversarial": "Confusion matrix under attack", "confidence": "Confidence histograms",
           "gallery": "Adversarial examples", "certification": "Certified accuracy"}


def load_audit(path: str | Path) -> dict:
    """Read an audit.json (or a folder holding one); refuses files that are not robustkit audits."""
    path = Path(path)
    if path.is_dir():
        path = path / "audit.json"
    if not path.is_file():
        raise FileNotFoundError(f"No audit found at {str(path)!r}; run `robustkit audit` first.")
    doc = json.loads(path.read_text())
    if doc.get("format") != AUDIT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a robustkit audit (format {doc.get('format')!r}).")
    return doc


def _pct(acc: dict | None) -> str:
    if not acc or acc.get("value") is None:
        return "n/a"
    lo, hi = acc["ci95"]
    return f"{100 * acc['value']:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def _short_params(p: dict) -> str:
    skip = {"attack", "threat", "model_mode", "seed"}
    return ", ".join(f"{k}={v}" for k, v in p.items() if k not in skip and not isinstance(v, dict))


def _threat_text(doc: dict) -> str:
    th = doc["threat"]
    return doc.get("threat_description") or f"{th['norm']}, eps={th['eps']:.6g}, bounds={th['bounds']}"


def _tables(doc: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table of the report; Markdown and HTML share them."""
    ev, names = doc["evaluation"], doc["class_names"]
    tables = [("Headline", ["clean accuracy", "robust accuracy", "threat model", "preset", "mode", "n"],
               [[_pct(ev["clean_accuracy"]), _pct(ev["robust_accuracy"]), _threat_text(doc), ev["preset"],
                 ev["mode"], str(ev["n"])]])]
    if doc.get("hardening"):  # written by `robustkit harden`: the original and the hardened model side by side
        hd = doc["hardening"]
        tables.append(("Hardening (original vs hardened)", hd["header"], hd["rows"]))
        tables.append(("Hardening steps", ["note"], [[n] for n in hd.get("notes", [])]))
    tables.append(("Attack ensemble (each attack runs only on samples still robust)",
                   ["attack", "kind", "parameters", "seed", "attacked", "broken", "robust after", "seconds", "status"],
                   [[a["name"], a["kind"], _short_params(a["params"]), str(a["seed"]), str(a["n_attacked"]),
                     str(a["n_broken"]), str(a.get("robust_after", "")), f"{a['seconds']:.1f}", a["status"]]
                    for a in ev["attacks"]]))
    details = [(a["name"], a["seed"], a["details"]) for a in ev["attacks"] if a.get("details")]
    if details:
        keys = list(details[0][2])
        tables.append(("Attack details", ["attack", "seed"] + [k.replace("_", " ") for k in keys],
                       [[n, str(s)] + [_f(d.get(k)) if isinstance(d.get(k), float) else str(d.get(k)) for k in keys]
                        for n, s, d in details]))
    sp = ev["seed_spread"]
    if len(sp["robust_accuracy_per_seed"]) > 1:
        tables.append(("Seeds", ["seeds", "per seed", "worst case (per sample)", "spread (max-min)"],
                       [[str(ev["seeds"]), ", ".join(f"{100 * v:.2f}%" for v in sp["robust_accuracy_per_seed"]),
                         _pct(ev["robust_accuracy"]), f"{100 * (sp['max'] - sp['min']):.2f} points"]]))
    m = doc["metrics"]
    tables.append(("Per class", ["class", "n", "clean acc", "robust acc", "precision clean", "precision adv",
                                 "recall clean", "recall adv"],
                   [[names[r["class"]], str(r["n"]), _pct(r["clean"]), _pct(r["robust"]),
                     _f(m["precision_recall_clean"][i]["precision"]), _f(m["precision_recall_adversarial"][i]["precision"]),
                     _f(m["precision_recall_clean"][i]["recall"]), _f(m["precision_recall_adversarial"][i]["recall"])]
                    for i, r in enumerate(ev["per_class"])]))
    checks = doc["preflight"] + (doc.get("sanity") or [])
    tables.append(("Sanity checks", ["check", "verdict", "evidence"],
                   [[c["name"], c["status"].upper(), c["message"]] for c in checks]))
    if doc.get("sweep"):
        s = doc["sweep"]
        tables.append((f"Eps sweep (preset {s['preset']})", ["eps", "robust accuracy"],
                       [[f"{e:.6g}", _pct(a)] for e, a in zip(s["eps"], s["robust_accuracy"])]))
    if doc.get("noise"):
        nz = doc["noise"]
        tables.append(("Gaussian noise", ["sigma", "accuracy"],
                       [[f"{s:.4g}", _pct(a)] for s, a in zip(nz["sigma"], nz["accuracy"])]))
    if doc.get("certification"):
        c = doc["certification"]
        tables.append((f"Randomized smoothing (sigma={c['sigma']}, N0={c['n0']}, N={c['n']}, alpha={c['alpha']}, "
                       f"{c['num_samples']} samples; abstain rate {_pct(c['abstain_rate'])}; smoothed accuracy "
                       f"{_pct(c['smoothed_accuracy'])})", ["L2 radius", "certified accuracy"],
                       [[f"{r:.4g}", _pct(a)] for r, a in zip(c["radii"], c["certified_accuracy"])]))
    if doc.get("gallery") and gallery_kind(doc) == "sentences":
        tables.append(("Adversarial examples", ["label", "original", "adversarial (changed words in *)", "prediction",
                                                "broken by"],
                       [[names[g["label"]], g["x"], _mark(g), f"{names[g['pred_clean']]} -> {names[g['pred_adv']]}",
                         str(g["broken_by"])] for g in doc["gallery"]]))
    p = doc["provenance"]
    vers = ", ".join(f"{k} {v}" for k, v in p["versions"].items() if v)
    ck = p.get("checkpoint") or {}
    tables.append(("Provenance", ["item", "value"], [
        ["versions", vers], ["git commit", str(p.get("git_commit"))],
        ["checkpoint", f"{ck.get('path')} sha256={ck.get('sha256')}" if ck else "in-memory model"],
        ["data", f"{p['data'].get('name', '?')} n={p['data']['n']} sha256={p['data']['sha256']}"],
        ["seeds", str(p["seeds"])], ["device", json.dumps(p["device"])],
        ["wall time", f"{p['wall_seconds']:.1f} s"], ["created", doc["created"]],
        ["command", " ".join(p.get("argv") or [])]]))
    return tables


def _mark(g: dict) -> str:
    words = g["x_adv"].split()
    for k in g.get("changed", []):
        if k < len(words):
            words[k] = f"*{words[k]}*"
    return " ".join(words)


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _notes(doc: dict) -> list[str]:
    notes = list(doc["evaluation"]["notes"])
    v = doc["verdict"]
    notes.insert(0, f"Overall sanity verdict: {v['status'].upper()}"
                    + (f" (failed: {', '.join(v['failed'])})" if v["failed"] else "")
                    + (f" (warnings: {', '.join(v['warned'])})" if v["warned"] else ""))
    notes += [f"Cut by the time budget: {c}" for c in doc.get("cut", [])]
    return notes


def render_markdown(doc: dict, plot_dir: str | None = "audit_plots") -> str:
    lines = ["# Robustness audit", ""]
    lines += [f"- {n}" for n in _notes(doc)] + [""]
    for title, header, rows in _tables(doc):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""]
    if plot_dir:
        for name, title in _TITLES.items():
            if name in doc.get("_plots", {}):
                lines += [f"## {title}", "", f"![{title}]({plot_dir}/{name}.png)", ""]
    lines += ["Full attack configurations and per-sample results are in audit.json.", ""]
    return "\n".join(lines)


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 7px;"
        "font-size:13px;text-align:left;vertical-align:top}th{background:#f0f0f0}img{max-width:100%}"
        ".PASS{color:#17702a;font-weight:bold}.WARN{color:#a66b00;font-weight:bold}.FAIL{color:#b00020;"
        "font-weight:bold}")


def render_html(doc: dict, plots: dict[str, bytes]) -> str:
    esc = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>robustkit audit</title>"
             f"<style>{_CSS}</style></head><body><h1>Robustness audit</h1><ul>"]
    parts += [f"<li>{esc(n)}</li>" for n in _notes(doc)] + ["</ul>"]
    for title, header, rows in _tables(doc):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td class='{esc(c)}'>{esc(c)}</td>" if c in ("PASS", "WARN", "FAIL")
                                          else f"<td>{esc(c)}</td>" for c in r) + "</tr>")
        parts.append("</table>")
    for name, title in _TITLES.items():
        if name in plots:
            b64 = base64.b64encode(plots[name]).decode("ascii")
            parts.append(f"<h2>{esc(title)}</h2><img alt='{esc(title)}' src='data:image/png;base64,{b64}'>")
    parts.append("<p>Full attack configurations and per-sample results are in audit.json.</p></body></html>")
    return "".join(parts)


def write_report(doc: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write audit.json, audit.md (+ audit_plots/*.png) and audit.html into ``out_dir``."""
    from .plots import all_plots  # matplotlib is imported only when a report is drawn

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "audit.json", json.dumps(doc, indent=1))
    plots = all_plots(doc)
    for name, png in plots.items():
        atomic_write_bytes(out / "audit_plots" / f"{name}.png", png)
    atomic_write_text(out / "audit.md", render_markdown({**doc, "_plots": plots}))
    atomic_write_text(out / "audit.html", render_html(doc, plots))
    return {"json": out / "audit.json", "markdown": out / "audit.md", "html": out / "audit.html"}
