"""`robustkit export`: write a checkpoint as ONNX and check ONNX Runtime's logits against PyTorch's."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import app
from ._common import JSON_OUT, SEED, USER_ERRORS, VERBOSE, WHICH, fail, resolve_checkpoint, setup_logging


@app.command()
def export(
    target: Optional[str] = typer.Argument(None, help="Run folder or .safetensors checkpoint written by robustkit."),
    format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file (default: <run folder>/<which>.onnx)."),
    batch: int = typer.Option(8, "--batch", help="Size of the batch ONNX Runtime's logits are checked on."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
    which: str = WHICH,
    seed: int = SEED,
    json_out: bool = JSON_OUT,
    verbose: bool = VERBOSE,
) -> None:
    """Export a vision or text checkpoint to ONNX; reports the largest logit difference against PyTorch
    on a check batch (images uniform in [0, 1]; texts sample sentences)."""
    from .._validation import check_choice, check_number
    from ..checkpoint import atomic_write_text, load_model
    from ..hardening.export import export_inputs, export_onnx
    from ..modality import for_checkpoint
    setup_logging(verbose)
    try:
        check_choice(format, "format", ("onnx",), owner="the command line")
        check_number(batch, "batch", owner="the command line", low=1, integer=True)
        check_number(opset, "opset", owner="the command line", low=9, integer=True)
        if target is None:
            raise ValueError("The model is missing: give a run folder or checkpoint file as the first argument.")
        ckpt = resolve_checkpoint(target, which)
        model, meta = load_model(ckpt)
        modality = for_checkpoint(meta)
        path = out or ckpt.with_suffix(".onnx")
        example = export_inputs(model, modality, batch=2, seed=seed)
        check = export_inputs(model, modality, batch=batch, seed=seed + 1)
        doc = export_onnx(model, example, path, opset=opset, check_inputs=check)
        doc.update({"format": "onnx", "checkpoint": str(ckpt), "checkpoint_sha256": meta["sha256"],
                    "modality": modality.name})
        atomic_write_text(Path(path).with_suffix(".export.json"), json.dumps(doc, indent=1))
    except USER_ERRORS as err:
        fail(err)
        return
    if json_out:
        typer.echo(json.dumps(doc, indent=1))
        return
    typer.echo(f"wrote {doc['path']} ({doc['bytes'] / 1e6:.2f} MB, opset {opset}, {doc['exporter']})")
    typer.echo(f"ONNX Runtime vs PyTorch on a batch of {doc['batch']}: max abs logit difference "
               f"{doc['max_abs_logit_diff']:.3g}")
    if doc.get("word_map"):
        typer.echo(f"note: the model reads words through a {doc['word_map']['kind']} map that the ONNX graph does not "
                   f"contain; it is in {Path(doc['path']).with_suffix('.export.json')} (apply it before tokenizing)")
