"""`robustkit check`: the preflight contract check alone (no attack runs)."""
from __future__ import annotations

import json
from typing import List, Optional

import typer

from . import app
from ._common import (ALLOW_DOWNLOAD, AMP, DATA, DATA_DIR, DATA_OPTION, DEVICE, JSON_OUT, MODEL_ARG, SEED, TARGET,
                      USER_ERRORS, WEIGHTS, WHICH, fail, load_target)


@app.command()
def check(
    target: Optional[str] = TARGET,
    data: Optional[str] = DATA,
    data_dir: Optional[str] = DATA_DIR,
    limit: int = typer.Option(256, help="Check on the first N evaluation samples."),
    which: str = WHICH,
    weights: Optional[str] = WEIGHTS,
    allow_download: bool = ALLOW_DOWNLOAD,
    model_arg: List[str] = MODEL_ARG,
    data_option: List[str] = DATA_OPTION,
    device: str = DEVICE,
    amp: bool = AMP,
    seed: int = SEED,
    json_out: bool = JSON_OUT,
) -> None:
    """Preflight contract check: bounds, logits vs probabilities, determinism, gradients, eval mode."""
    from ..checkpoint import atomic_write_text
    from ..evaluation import preflight, worst_status
    try:
        t = load_target(target, data, data_dir, seed, which, weights=weights, allow_download=allow_download,
                        model_args=model_arg, data_options=data_option).place(device, amp)
        x, y = t.eval_split(limit)
        checks = preflight(t.model, x, y, bounds=tuple(t.ds.bounds) if getattr(t.ds, "bounds", None) else None)
    except USER_ERRORS as err:
        fail(err)
        return
    status = worst_status(checks)
    doc = {"status": status, "modality": t.modality.name, "checks": checks}
    atomic_write_text(t.run_dir / "check.json", json.dumps(doc, indent=1))
    lines = [f"{c['status'].upper():<5} {c['name']:<18} {c['message']}" for c in checks] + [f"overall: {status.upper()}"]
    atomic_write_text(t.run_dir / "check.md", "# Preflight check\n\n" + "".join(f"- {ln}\n" for ln in lines))
    typer.echo(json.dumps(doc, indent=1) if json_out else "\n".join(lines))
    if status == "fail":
        raise typer.Exit(1)
