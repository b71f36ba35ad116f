"""`robustkit list`: datasets, models, attacks, training methods and sanity checks, with their modality."""
from __future__ import annotations

import json

import typer

from . import app
from ._common import JSON_OUT, SEED


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    return text if len(text) <= 110 else text[:107].rsplit(" ", 1)[0] + " ..."


@app.command("list")
def list_cmd(json_out: bool = JSON_OUT, seed: int = SEED) -> None:
    """Show the registered datasets, models, attacks, training methods and sanity checks."""
    del seed  # every command takes --seed (scripts pass it everywhere); a listing draws nothing random
    from .. import attacks
    from ..data import dataset_info
    from ..evaluation.sanity import _CHECKS
    from ..models import available_models
    from ..models.text import available_text_models
    from ..training.objectives import available_objectives, get_objective_class
    doc = {"datasets": dataset_info(),
           "models": {**{k: {"modality": "vision", "description": v} for k, v in available_models().items()},
                      **{k: {"modality": "text", "description": v} for k, v in available_text_models().items()}},
           "attacks": attacks.info(),
           "methods": {m: {"modality": ", ".join(get_objective_class(m).modalities),
                           "description": _first_sentence(get_objective_class(m).__doc__)}
                       for m in available_objectives()},
           "checks": {c.name: {"modality": ", ".join(c.modalities), "description": c.stage} for c in _CHECKS.values()}}
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    for section, items in doc.items():
        typer.echo(f"{section}:")
        for k, v in items.items():
            tag = v.get("modality", "")
            extra = v.get("kind", "")
            typer.echo(f"  {k:<18} [{tag}{', ' + extra if extra else ''}] {v.get('description', v.get('doc', ''))}")
