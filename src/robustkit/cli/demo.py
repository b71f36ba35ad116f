"""`robustkit demo`: the quick start on embedded data (scikit-learn digits)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from . import app
from ._common import JSON_OUT, SEED, progress, setup_logging


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the demo's runs and report."),
    epochs: int = typer.Option(15, help="Training epochs per model."),
    eps: str = typer.Option("0.2", help="Threat radius (digits pixels come in steps of 1/16)."),
    seed: int = SEED,
    json_out: bool = JSON_OUT,
) -> None:
    """Train standard and Fast-AT models on digits, attack both with PGD-20, print clean vs robust
    accuracy, and write the run folders and a report."""
    from ..demo import run_demo
    setup_logging(False)
    doc = run_demo(out, epochs=epochs, eps=eps, seed=seed, progress=progress(json_out),
                   echo=(lambda s: None) if json_out else typer.echo)
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
