"""`robustkit compare`: a side-by-side table of several audits."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer

from . import app
from ._common import JSON_OUT, SEED, USER_ERRORS, fail, pct


def compare_row(name: str, doc: dict) -> dict:
    ev = doc["evaluation"]
    th = doc.get("threat_description") or f"{doc['threat']['norm']} eps={doc['threat']['eps']:.4g}"
    return {"audit": name, "modality": doc.get("modality", "vision"), "threat": th, "preset": ev["preset"],
            "clean accuracy": pct(ev["clean_accuracy"]), "robust accuracy": pct(ev["robust_accuracy"]),
            "verdict": doc["verdict"]["status"], "seconds": doc["provenance"]["wall_seconds"]}


@app.command()
def compare(
    audits: List[str] = typer.Argument(..., help="Run folders or audit.json files."),
    out: Path = typer.Option(Path("."), help="Folder for compare.md and compare.json."),
    seed: int = SEED,
    json_out: bool = JSON_OUT,
) -> None:
    """Side-by-side table of several audits (clean/robust accuracy with CIs, threat, preset, verdict)."""
    from ..checkpoint import atomic_write_text
    from ..evaluation import load_audit
    try:
        rows = [compare_row(a, load_audit(a)) for a in audits]
    except (*USER_ERRORS, json.JSONDecodeError) as err:
        fail(err)
        return
    header = ["audit", "modality", "threat", "preset", "clean accuracy", "robust accuracy", "verdict", "seconds"]
    md = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                   + ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.md", md + "\n")
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=1))
    typer.echo(json.dumps(rows, indent=1) if json_out else md)
