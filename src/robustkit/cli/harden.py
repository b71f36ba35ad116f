"""`robustkit harden`: prune and/or quantize a trained model into a new run folder, then re-audit it
side by side with the original -> harden.json/.md/.html and the hardened run's audit report."""
from __future__ import annotations

import json
from typing import Optional

import typer

from . import app
from ._common import (DATA_DIR, EPS, JSON_OUT, SEED, USER_ERRORS, VERBOSE, WHICH, fail, parse_eps, progress,
                      setup_logging)


@app.command()
def harden(
    target: Optional[str] = typer.Argument(None, help="Run folder or .safetensors checkpoint written by robustkit "
                                                      "(its float model; the folder is only read)."),
    prune: Optional[str] = typer.Option(None, "--prune", help="Sparsity in [0, 1): share of conv/linear weights "
                                                             "removed (global magnitude), or of channels with "
                                                             "--structured."),
    structured: bool = typer.Option(False, "--structured", help="Remove whole channels/filters (torch-pruning): the "
                                                                "layers really shrink (images)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8 (static for conv nets, dynamic for text) | "
                                                                   "int8-static | int8-dynamic | int8-qat."),
    finetune: Optional[str] = typer.Option(None, "--finetune", help="Fine-tune after pruning with this training "
                                                                   "method (robustkit list), e.g. fast, pgd, trades."),
    epochs: int = typer.Option(2, "--epochs", help="Fine-tuning epochs."),
    lr: float = typer.Option(1e-3, "--lr", help="Fine-tuning learning rate (Adam, cosine decay)."),
    audit_preset: str = typer.Option("standard", "--audit-preset", help="quick | standard | thorough | none: the "
                                                                       "audit run on both models."),
    audit_limit: int = typer.Option(1000, "--audit-limit", help="Audit the first N test samples."),
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit", help="Clean accuracy and PGD-20 on the first N "
                                                                       "test samples (default: all)."),
    eps: Optional[str] = EPS,
    name: Optional[str] = typer.Option(None, "--name", help="Name of the new run folder (default: the source's "
                                                           "name + what was done)."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", help="Parent folder of the new run (default: the "
                                                                 "source run's out_dir, else runs)."),
    data_dir: Optional[str] = DATA_DIR,
    threads: int = typer.Option(1, "--threads", help="CPU threads for the latency measurements."),
    calibration_size: int = typer.Option(1024, "--calibration-size", help="Training images that calibrate static "
                                                                          "int8."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing hardened run folder."),
    which: str = WHICH,
    seed: int = SEED,
    json_out: bool = JSON_OUT,
    verbose: bool = VERBOSE,
) -> None:
    """Prune / quantize a model into a new run folder and re-audit it against the original (the source
    run folder is never modified)."""
    from ..hardening import harden as harden_fn
    setup_logging(verbose)
    try:
        from .._validation import parse_fraction
        sparsity = parse_fraction(prune, "prune") if prune is not None else None  # fractions such as 9/10 too
        if target is None:
            raise ValueError("The model is missing: give a run folder or checkpoint file as the first argument.")
        doc = harden_fn(target, prune=sparsity, structured=structured, quantize=quantize, finetune=finetune,
                        epochs=epochs, lr=lr, audit_preset=audit_preset, audit_limit=audit_limit,
                        eval_limit=eval_limit, eps=parse_eps(eps), name=name, out_dir=out_dir, data_dir=data_dir,
                        seed=seed, overwrite=overwrite, threads=threads, calibration_size=calibration_size,
                        which=which, progress=progress(json_out))
    except USER_ERRORS as err:
        fail(err)
        return
    if json_out:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    for line in summary(doc):
        typer.echo(line)


def summary(doc: dict) -> list[str]:
    from ..hardening.report import rows
    lines = [f"hardened run: {doc['run_dir']}  ({doc['seconds']:.0f}s)"]
    lines += [f"  {r[0]:<58} {r[1]:>24}  ->  {r[2]:>24}  {r[3]}" for r in rows(doc)]
    lines.append(f"wrote {doc['run_dir']}/harden.json, harden.md, harden.html"
                 + (", audit.json/.md/.html" if doc["hardened"].get("audit") else ""))
    return lines
