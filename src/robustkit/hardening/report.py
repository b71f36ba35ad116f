"""harden.json (data first), harden.md and harden.html, plus the hardening section of the run's audit report.

Everything shown is read from the harden document; the original and the hardened model side by side.
"""
from __future__ import annotations

import copy
import html
import json
from pathlib import Path

from ..checkpoint import atomic_write_text


def _pct(acc: dict | None) -> str:
    if not acc or acc.get("value") is None:
        return "n/a"
    lo, hi = acc["ci95"]
    return f"{100 * acc['value']:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _size(n) -> str:
    return "n/a" if n is None else (f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB")


def _ms(s) -> str:
    return "n/a" if s is None else f"{1000 * s:.2f} ms"


def _pts(v) -> str:
    return "" if v is None else f"{v:+.2f} points"


def rows(doc: dict) -> list[list[str]]:
    """[metric, original, hardened, change] rows of the side-by-side table."""
    o, h, c = doc["original"], doc["hardened"], doc["comparison"]
    out = [["parameters", f"{o['parameters']:,}", f"{h['parameters']:,}", ""],
           ["non-zero share", f"{100 * o['nonzero_share']:.1f}%", f"{100 * h['nonzero_share']:.1f}%", ""],
           ["file size", _size(o["file_bytes"]), _size(h["file_bytes"]),
            "" if not c.get("file_size_ratio") else f"{c['file_size_ratio']:.2f}x smaller"],
           ["differentiable", str(o["differentiable"]), str(h["differentiable"]), ""]]
    lat = doc["latency"]
    for bs, row in lat["batch"].items():
        out.append([f"CPU latency, batch {bs} (median, {lat['threads']} thread(s))", _ms(row["original"]["median_s"]),
                    _ms(row["hardened"]["median_s"]), f"{row.get('speedup', 0):.2f}x faster"])
    n = _get(o, "eval", "n")
    out.append([f"clean accuracy (n={n})", _pct(_get(o, "eval", "clean_accuracy")),
                _pct(_get(h, "eval", "clean_accuracy")), _pts(c["clean_accuracy_points"])])
    if _get(h, "eval", "pgd"):
        out.append([f"robust accuracy, {_get(h, 'eval', 'pgd', 'attack')} (n={n})",
                    _pct(_get(o, "eval", "pgd", "robust_accuracy")), _pct(_get(h, "eval", "pgd", "robust_accuracy")),
                    _pts(c["pgd_robust_accuracy_points"])])
    if h.get("audit"):
        a = h["audit"]
        out.append([f"audit clean accuracy ({a['preset']}, n={a['n']})", _pct(_get(o, "audit", "clean_accuracy")),
                    _pct(a["clean_accuracy"]), _pts(c["audit_clean_accuracy_points"])])
        out.append([f"audit robust accuracy ({a['preset']}, n={a['n']})", _pct(_get(o, "audit", "robust_accuracy")),
                    _pct(a["robust_accuracy"]), _pts(c["audit_robust_accuracy_points"])])
        out.append(["audit attacks", _attacks(o.get("audit")), _attacks(a), ""])
    return out


def _attacks(a: dict | None) -> str:
    if not a:
        return "n/a"
    return ", ".join(f"{x['name']}[{x['crafted_with']}]" if x.get("crafted_with") else x["name"]
                     for x in a["attacks"] if not str(x.get("status", "")).startswith("skipped"))


def notes(doc: dict) -> list[str]:
    out = []
    for s in doc["hardening"]["steps"]:
        detail = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("step", "history", "objective", "layers",
                                                                         "channels_before", "channels_after"))
        out.append(f"{s['step']}: {detail}")
    p = doc["hardening"]["parent"]
    out.append(f"parent checkpoint: {p['path']} (sha256 {p['sha256']})")
    out.append(f"threat model: {doc['threat_description']}")
    h = doc["hardened"]
    if not h["differentiable"]:
        out.append("The hardened model has no usable input gradients: it was audited with attacks crafted on its "
                   "float twin (int8 weights dequantized) and transferred, plus black-box attacks on the model "
                   "itself. No gradient attack was run on it.")
    if h.get("audit"):
        out += [f"audit note: {n}" for n in h["audit"]["notes"]]
    out.append(f"latency: interleaved repetitions ({doc['latency']['repeats']} per model and batch size), medians, "
               f"torch.inference_mode(), {doc['latency']['threads']} thread(s)")
    return out


def section(doc: dict) -> dict:
    """The hardening section embedded in the run's audit JSON (rendered by robustkit.evaluation.report)."""
    return {"header": ["metric", "original", "hardened", "change"], "rows": rows(doc), "notes": notes(doc)}


def render_markdown(doc: dict) -> str:
    lines = ["# Hardening report", "", f"- source: `{doc['source']}`", f"- hardened run: `{doc['run_dir']}`"]
    lines += [f"- {n}" for n in notes(doc)] + ["", "| metric | original | hardened | change |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows(doc)]
    lines += ["", "Full measurements are in harden.json; the hardened model's audit in audit.json/.md/.html.", ""]
    return "\n".join(lines)


def render_html(doc: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>robustkit hardening</title><style>"
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:left}th{background:#f0f0f0}"
             "</style></head><body><h1>Hardening report</h1><ul>"]
    parts += [f"<li>{e(n)}</li>" for n in [f"source: {doc['source']}", f"hardened run: {doc['run_dir']}"] + notes(doc)]
    parts.append("</ul><table><tr><th>metric</th><th>original</th><th>hardened</th><th>change</th></tr>")
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows(doc)]
    parts.append("</table></body></html>")
    return "".join(parts)


def write_harden_report(doc: dict, out_dir) -> dict[str, Path]:
    """harden.json/.md/.html into ``out_dir``, and the hardened model's audit (audit.json/.md/.html) with a
    hardening section, when an audit ran. ``doc`` is left without the embedded audit document."""
    out = Path(out_dir)
    audit_doc = (doc.get("hardened") or {}).get("audit", {}) or {}
    full = audit_doc.pop("_doc", None) if isinstance(audit_doc, dict) else None
    atomic_write_text(out / "harden.json", json.dumps(doc, indent=1, default=str))
    atomic_write_text(out / "harden.md", render_markdown(doc))
    atomic_write_text(out / "harden.html", render_html(doc))
    paths = {"json": out / "harden.json", "markdown": out / "harden.md", "html": out / "harden.html"}
    if full is not None:
        from ..evaluation import write_report
        full = copy.copy(full)
        full["hardening"] = section(doc)
        paths["audit"] = write_report(full, out)["html"]
    return paths
