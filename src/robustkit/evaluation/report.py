"""Render an audit JSON document as Markdown and as self-contained HTML (PNG plots embedded as base64).

Everything shown is read from the JSON (DESIGN decision 6). ``write_report(doc, folder)`` writes
``audit.json``, ``audit.md`` (plots beside it in ``audit_plots/``) and ``audit.html``.
"""
from __future__ import annotations

import base64
import html
import json
import re
import shlex
from pathlib import Path

from ..checkpoint import atomic_write_bytes, atomic_write_text
from ._common import gallery_kind
from .audit import AUDIT_FORMAT

_TITLES = {"training_curve": "Training curve", "eps_curve": "Robust accuracy vs eps",
           "per_class": "Per-class clean and robust accuracy", "confusion_clean": "Confusion matrix (clean)",
           "confusion_adversarial": "Confusion matrix under attack",
           "precision_recall": "Per-class precision and recall",
           "confidence": "Confidence histograms", "gallery": "Adversarial examples",
           "certification": "Certified accuracy"}


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


def _n_a(v) -> str:
    return "n/a" if v is None or v == "" else str(v)


def _command(argv: list[str] | None) -> str:
    """The command line that produced the audit, its program shown by name (not the venv path it ran from)."""
    if not argv:
        return "n/a"
    return shlex.join([Path(argv[0]).name, *argv[1:]])


def _data_text(data: dict) -> str:
    """e.g. "fashion-mnist test, first 200 (n=200)"; unknown parts are left out."""
    if not data.get("name"):
        return f"n/a (n={data.get('n', '?')})"
    where = data["name"] + (f" {data['split']}" if data.get("split") else "")
    first = f", first {data['limit']}" if data.get("limit") else ""
    return f"{where}{first} (n={data.get('n', '?')})"


def _header(doc: dict) -> tuple[str, list[str], list[list[str]]]:
    """What was audited and how: the questions a reader asks before trusting any number below."""
    m = doc.get("model") or {}
    p = doc["provenance"]
    ck = p.get("checkpoint") or {}
    params = m.get("parameters")
    training = _n_a(m.get("method"))
    if m.get("training_eps") is not None:
        training += f" (trained at {_n_a(m.get('training_norm'))} eps={m['training_eps']:.6g})"
    return ("Header", ["item", "value"], [
        ["model", f"{_n_a(m.get('architecture'))}, {f'{params:,}' if params is not None else 'n/a'} parameters"],
        ["training method", training],
        ["audited at", f"{_threat_text(doc)}, preset {doc['evaluation']['preset']}"],
        ["data", _data_text(p.get("data") or {})],
        ["checkpoint sha256", f"{ck['sha256']} ({ck.get('path')})" if ck.get("sha256") else "n/a (in-memory model)"],
        ["run folder", _n_a(m.get("run_folder"))],
        ["command", _command(p.get("argv"))]])


def _sections(doc: dict) -> list[dict]:
    """Every section of the report after the header: title, table (header, rows) and the plots drawn beside it.
    Markdown and HTML share them."""
    ev, names = doc["evaluation"], doc["class_names"]

    def sec(title, header, rows, plots=()):
        return {"title": title, "header": header, "rows": rows, "plots": list(plots)}

    out = [sec("Headline", ["clean accuracy", "robust accuracy", "threat model", "preset", "mode", "n"],
               [[_pct(ev["clean_accuracy"]), _pct(ev["robust_accuracy"]), _threat_text(doc), ev["preset"],
                 ev["mode"], str(ev["n"])]])]
    if doc.get("hardening"):  # written by `robustkit harden`: the original and the hardened model side by side
        hd = doc["hardening"]
        out.append(sec("Hardening (original vs hardened)", hd["header"], hd["rows"]))
        out.append(sec("Hardening steps", ["note"], [[n] for n in hd.get("notes", [])]))
    tc = doc.get("training_curve")
    if tc and tc.get("epoch"):
        out.append(sec("Training curve (validation accuracy per epoch, from metrics.jsonl)",
                       ["epoch", "clean accuracy", "robust accuracy"],
                       [[str(e), _f(c), _f(r)] for e, c, r in zip(tc["epoch"], tc["val_clean_acc"],
                                                                    tc["val_robust_acc"])], ["training_curve"]))
    if doc.get("sweep"):
        s = doc["sweep"]
        presets = s.get("presets") or [s["preset"]] * len(s["eps"])
        hi = s.get("headline_index")
        title = f"Eps sweep (preset {s['preset']}" + (
            f"; the point at eps={s['headline_eps']:.6g} is the headline evaluation, preset "
            f"{presets[hi]})" if hi is not None else ")")
        out.append(sec(title, ["eps", "robust accuracy", "preset"],
                       [[f"{e:.6g}", _pct(a), p + (" (headline)" if i == hi else "")]
                        for i, (e, a, p) in enumerate(zip(s["eps"], s["robust_accuracy"], presets))], ["eps_curve"]))
    pc, pa = doc["metrics"]["precision_recall_clean"], doc["metrics"]["precision_recall_adversarial"]
    out.append(sec("Per class", ["class", "n", "clean acc", "robust acc", "precision clean", "precision adv",
                                 "recall clean", "recall adv"],
                   [[names[r["class"]], str(r["n"]), _pct(r["clean"]), _pct(r["robust"]),
                     _f(pc[i]["precision"]), _f(pa[i]["precision"]), _f(pc[i]["recall"]), _f(pa[i]["recall"])]
                    for i, r in enumerate(ev["per_class"])],
                   ["per_class", "confusion_clean", "confusion_adversarial", "precision_recall"]))
    checks = doc["preflight"] + (doc.get("sanity") or [])
    out.append(sec("Sanity checks", ["check", "verdict", "evidence"],
                   [[c["name"], c["status"].upper(), _check_message(c)] for c in checks]))
    out.append(sec("Attack ensemble (each attack runs only on samples still robust)",
                   ["attack", "kind", "parameters", "seed", "attacked", "broken", "robust after", "seconds", "status"],
                   [[a["name"], a["kind"], _short_params(a["params"]), str(a["seed"]), str(a["n_attacked"]),
                     str(a["n_broken"]), str(a.get("robust_after", "")), f"{a['seconds']:.1f}", a["status"]]
                    for a in ev["attacks"]], ["confidence"]))
    details = [(a["name"], a["seed"], a["details"]) for a in ev["attacks"] if a.get("details")]
    if details:
        keys = list(details[0][2])
        out.append(sec("Attack details", ["attack", "seed"] + [k.replace("_", " ") for k in keys],
                       [[n, str(s)] + [_f(d.get(k)) if isinstance(d.get(k), float) else str(d.get(k)) for k in keys]
                        for n, s, d in details]))
    sp = ev["seed_spread"]
    if len(sp["robust_accuracy_per_seed"]) > 1:
        out.append(sec("Seeds", ["seeds", "per seed", "worst case (per sample)", "spread (max-min)"],
                       [[str(ev["seeds"]), ", ".join(f"{100 * v:.2f}%" for v in sp["robust_accuracy_per_seed"]),
                         _pct(ev["robust_accuracy"]), f"{100 * (sp['max'] - sp['min']):.2f} points"]]))
    if doc.get("noise"):
        nz = doc["noise"]
        out.append(sec("Gaussian noise", ["sigma", "accuracy"],
                       [[f"{s:.4g}", _pct(a)] for s, a in zip(nz["sigma"], nz["accuracy"])]))
    if doc.get("certification"):
        c = doc["certification"]
        out.append(sec(f"Randomized smoothing (sigma={c['sigma']}, N0={c['n0']}, N={c['n']}, alpha={c['alpha']}, "
                       f"{c['num_samples']} samples; abstain rate {_pct(c['abstain_rate'])}; smoothed accuracy "
                       f"{_pct(c['smoothed_accuracy'])})", ["L2 radius", "certified accuracy"],
                       [[f"{r:.4g}", _pct(a)] for r, a in zip(c["radii"], c["certified_accuracy"])],
                       ["certification"]))
    if doc.get("gallery") and gallery_kind(doc) == "sentences":
        out.append(sec("Adversarial examples", ["label", "original", "adversarial (changed words in *)", "prediction",
                                                "broken by"],
                       [[names[g["label"]], g["x"], _mark(g), f"{names[g['pred_clean']]} -> {names[g['pred_adv']]}",
                         str(g["broken_by"])] for g in doc["gallery"]]))
    elif doc.get("gallery"):
        out.append(sec("Adversarial examples", [], [], ["gallery"]))
    p = doc["provenance"]
    vers = ", ".join(f"{k} {v}" for k, v in p["versions"].items() if v)
    ck = p.get("checkpoint") or {}
    out.append(sec("Provenance", ["item", "value"], [
        ["versions", vers], ["git commit", str(p.get("git_commit"))],
        ["checkpoint", f"{ck.get('path')} sha256={ck.get('sha256')}" if ck else "in-memory model"],
        ["data", f"{p['data'].get('name', '?')} n={p['data']['n']} sha256={p['data']['sha256']}"],
        ["seeds", str(p["seeds"])], ["device", json.dumps(p["device"])],
        ["wall time", f"{p['wall_seconds']:.1f} s"], ["created", doc["created"]],
        ["command", " ".join(p.get("argv") or [])]]))
    return out


def _check_message(c: dict) -> str:
    # A WARN/FAIL without words leaves the reader stuck: point at the evidence at least.
    return c.get("message") or (f"(no message; evidence: {json.dumps(c.get('evidence'))})"
                                if c["status"] in ("warn", "fail") else "")


def first_sentence(text: str) -> str:
    """Up to the first '.', '!' or '?' followed by a capital letter (so "eps=0.5" and "e.g. int8" stay whole)."""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip(), maxsplit=1)[0]


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
    checks = doc["preflight"] + (doc.get("sanity") or [])
    # Each check that did not pass, by name, with what it saw (its first sentence; the table has the rest).
    notes[:0] = [f"Overall sanity verdict: {v['status'].upper()}"
                 + (f" (failed: {', '.join(v['failed'])})" if v["failed"] else "")
                 + (f" (warnings: {', '.join(v['warned'])})" if v["warned"] else "")] + [
        f"{c['status'].upper()} {c['name']}: {first_sentence(_check_message(c))} (see Sanity checks)"
        for c in checks if c["status"] in ("warn", "fail")]
    notes += (doc.get("sweep") or {}).get("notes") or []
    notes += [f"Cut by the time budget: {c}" for c in doc.get("cut", [])]
    return notes


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not header:
        return []
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""])


def render_markdown(doc: dict, plot_dir: str | None = "audit_plots") -> str:
    plots = doc.get("_plots", {}) if plot_dir else {}
    title, header, rows = _header(doc)
    lines = ["# Robustness audit", "", f"## {title}", ""] + _md_table(header, rows)
    lines += [f"- {n}" for n in _notes(doc)] + [""]
    for s in _sections(doc):
        if not s["header"] and not any(n in plots for n in s["plots"]):
            continue  # a plot-only section whose plot was not drawn
        lines += [f"## {s['title']}", ""] + _md_table(s["header"], s["rows"])
        lines += [f"![{_TITLES[n]}]({plot_dir}/{n}.png)" for n in s["plots"] if n in plots]
        lines += [""] if any(n in plots for n in s["plots"]) else []
    lines += ["Full attack configurations and per-sample results are in audit.json.", ""]
    return "\n".join(lines)


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 7px;"
        "font-size:13px;text-align:left;vertical-align:top}th{background:#f0f0f0}img{max-width:100%}"
        ".plots{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start;margin-bottom:1.5em}"
        ".plots img{max-width:49%}.header td:first-child{font-weight:bold}"
        ".PASS{color:#17702a;font-weight:bold}.WARN{color:#a66b00;font-weight:bold}.FAIL{color:#b00020;"
        "font-weight:bold}")


def _html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    if not header:
        return ""
    esc = html.escape
    parts = [f"<table class='{cls}'><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for r in rows:
        parts.append("<tr>" + "".join(f"<td class='{esc(c)}'>{esc(c)}</td>" if c in ("PASS", "WARN", "FAIL")
                                      else f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    return "".join(parts) + "</table>"


def _img(png: bytes, title: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(title)}' title='{html.escape(title)}' src='data:image/png;base64,{b64}'>"


def render_html(doc: dict, plots: dict[str, bytes]) -> str:
    esc = html.escape
    title, header, rows = _header(doc)
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>robustkit audit</title>"
              f"<style>{_CSS}</style></head><body><h1>Robustness audit</h1>"),
             f"<h2>{esc(title)}</h2>", _html_table(header, rows, "header"), "<ul>"]
    parts += [f"<li>{esc(n)}</li>" for n in _notes(doc)] + ["</ul>"]
    for s in _sections(doc):
        imgs = [_img(plots[n], _TITLES[n]) for n in s["plots"] if n in plots]
        if not s["header"] and not imgs:
            continue  # a plot-only section whose plot was not drawn
        parts += [f"<h2>{esc(s['title'])}</h2>", _html_table(s["header"], s["rows"])]
        if imgs:
            parts.append("<div class='plots'>" + "".join(imgs) + "</div>")
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


COMPARE_HEADER = ["audit", "modality", "model", "threat", "preset", "clean accuracy", "robust accuracy", "verdict",
                  "seconds"]


def compare_row(name: str, doc: dict) -> dict:
    """One audit's line of the compare table (texts show their SubstitutionThreat description as the threat)."""
    ev = doc["evaluation"]
    th = doc.get("threat_description") or f"{doc['threat']['norm']} eps={doc['threat']['eps']:.4g}"
    arch = (doc.get("model") or {}).get("architecture")
    return {"audit": name, "modality": doc.get("modality", "vision"), "model": _n_a(arch), "threat": th,
            "preset": ev["preset"], "clean accuracy": _pct(ev["clean_accuracy"]),
            "robust accuracy": _pct(ev["robust_accuracy"]), "verdict": doc["verdict"]["status"],
            "seconds": doc["provenance"]["wall_seconds"]}


def write_compare(audits: list[tuple[str, dict]], out_dir: str | Path) -> dict[str, Path]:
    """compare.md, compare.json and compare.html (the table plus the eps sweeps of every audit that has one,
    overlaid in one embedded PNG) for ``(name, audit doc)`` pairs, written into ``out_dir``."""
    from .plots import compare_eps_curves

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [compare_row(n, d) for n, d in audits]
    table = [[str(r[h]) for h in COMPARE_HEADER] for r in rows]
    # One axis holds one kind of eps: the curves are the sweeps in the norm of the first one; audits without a
    # sweep (text audits usually) or in another norm (a word share is not an L-inf radius) stay in the table only.
    swept = [(n, d["sweep"]) for n, d in audits if d.get("sweep") and d["sweep"].get("eps")]
    norm = swept[0][1].get("norm") if swept else None
    curves = [(n, s) for n, s in swept if s.get("norm") == norm]
    no_sweep = [n for n, d in audits if not (d.get("sweep") and d["sweep"].get("eps"))]
    other_norm = [n for n, s in swept if s.get("norm") != norm]
    note = " ".join(([f"No eps sweep (not in the curves): {', '.join(no_sweep)}."] if no_sweep else [])
                    + ([f"Swept in another norm than {norm} (not in the curves): {', '.join(other_norm)}."]
                       if other_norm else []))
    md = "\n".join(["# Audit comparison", ""] + _md_table(COMPARE_HEADER, table) + ([note, ""] if note else []))
    esc = html.escape
    parts = [(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>robustkit compare</title>"
              f"<style>{_CSS}</style></head><body><h1>Audit comparison</h1>"), _html_table(COMPARE_HEADER, table)]
    if curves:
        parts += ["<h2>Robust accuracy vs eps</h2>", _img(compare_eps_curves(curves), "Robust accuracy vs eps")]
    if note:
        parts.append(f"<p>{esc(note)}</p>")
    parts.append("</body></html>")
    paths = {"markdown": out / "compare.md", "json": out / "compare.json", "html": out / "compare.html"}
    atomic_write_text(paths["markdown"], md)
    atomic_write_text(paths["json"], json.dumps(rows, indent=1))
    atomic_write_text(paths["html"], "".join(parts))
    return paths
