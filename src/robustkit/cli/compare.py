"""`robustkit compare`: a side-by-side table of several audits, with their eps sweeps overlaid (HTML)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import JSON_OUT, SEED, USER_ERRORS, fail


def default_out(first_audit: str) -> Path:
    """``compare/`` in the run folder holding the first audit: results land beside the audits, never in the
    working directory by surprise."""
    p = Path(first_audit)
    return (p if p.is_dir() else p.parent) / "compare"


@app.command()
def compare(
    audits: List[str] = typer.Argument(..., help="Run folders or audit.json files."),
    out: Optional[Path] = typer.Option(None, help="Folder for compare.md, compare.json and compare.html "
                                                  "(default: compare/ in the folder of the first audit, e.g. "
                                                  "runs/A/compare)."),
    seed: int = SEED,
    json_out: bool = JSON_OUT,
) -> None:
    """Side-by-side table of several audits (clean/robust accuracy with CIs, threat, preset, verdict) and their
    eps sweeps overlaid -> compare.md, compare.json, compare.html. Text audits are in the table; having no eps
    sweep, they are left out of the curves."""
    from ..evaluation import load_audit
    from ..evaluation.report import COMPARE_HEADER, compare_row, write_compare
    try:
        docs = [(a, load_audit(a)) for a in audits]
        paths = write_compare(docs, out if out is not None else default_out(audits[0]))
    except (*USER_ERRORS, json.JSONDecodeError) as err:
        fail(err)
        return
    rows = [compare_row(n, d) for n, d in docs]
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return
    typer.echo("\n".join(["| " + " | ".join(COMPARE_HEADER) + " |", "|" + "---|" * len(COMPARE_HEADER)]
                         + ["| " + " | ".join(str(r[h]) for h in COMPARE_HEADER) + " |" for r in rows]))
    typer.echo(f"wrote {paths['markdown']}, {paths['json']}, {paths['html']}")
