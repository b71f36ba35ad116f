"""`robustkit train`: train or adversarially fine-tune a model as a config says (images and texts alike)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import JSON_OUT, USER_ERRORS, VERBOSE, fail, progress, rank, setup_logging


def _given_keys(config: Optional[Path], set_: List[str], flags: dict) -> set[str]:
    """The settings this command line states (config file, flags, --set): what --resume compares."""
    import yaml
    keys = {k for k, v in flags.items() if v is not None}
    keys |= {item.split("=", 1)[0].split(".", 1)[0].strip() for item in set_ if "=" in item}
    if config is not None:
        keys |= set((yaml.safe_load(Path(config).read_text()) or {}).keys())
    return keys


def train_from_options(config: Optional[Path], set_: List[str], flags: dict, *, resume: bool, overwrite: bool,
                       json_out: bool, verbose: bool) -> None:
    """The body of `train` (also behind the deprecated `text train`)."""
    from ..config import TrainConfig, apply_overrides
    from ..training import train as train_fn
    setup_logging(verbose)
    printed: list[str] = []

    def on_epoch(row: dict) -> None:
        # One line per epoch as it ends (flushed): a run logged to a file is observable while it runs.
        line = epoch_line(row)
        printed.append(line)
        if not json_out:
            typer.echo(line)
            sys.stdout.flush()

    notes: list[str] = []
    try:
        base = TrainConfig.from_yaml(config).to_dict() if config is not None else {}
        base.update({k: v for k, v in flags.items() if v is not None})
        cfg = TrainConfig.from_dict(apply_overrides(base, set_), source=str(config or "command line"))
        t0 = time.perf_counter()
        result = train_fn(cfg, resume=resume, overwrite=overwrite, progress=progress(json_out),
                          given_keys=_given_keys(config, set_, flags) if resume else None, notes=notes,
                          on_epoch=on_epoch if rank() == 0 else None)
    except USER_ERRORS as err:
        fail(err)
        return
    seconds = time.perf_counter() - t0
    if rank() != 0:  # under torchrun: rank 0 reports for the job
        return
    for note in notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    doc = {"run_dir": str(result.run_dir), "epochs": len(result.history), "best": result.best,
           "last": result.history[-1] if result.history else None, "stopped_early": result.stopped_early,
           "seconds": seconds, **result.extra}
    lines = [epoch_line(row) for row in result.history]
    write_summary(result.run_dir, doc, lines)
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    if len(printed) < len(lines):
        typer.echo(f"(resumed after epoch {len(lines) - len(printed)}; every epoch: {result.run_dir}/train.md)")
    if result.stopped_early:
        typer.secho(result.stopped_early, fg=typer.colors.YELLOW)
    typer.echo(f"run folder: {result.run_dir} ({seconds:.1f}s)")


def epoch_line(row: dict) -> str:
    parts = [f"epoch {row['epoch'] + 1:>3}", f"loss {row.get('train_loss', float('nan')):.4f}",
             f"val clean {row.get('val_clean_acc', float('nan')):.4f}"]
    if "val_robust_acc" in row:
        parts.append(f"val PGD {row['val_robust_acc']:.4f}")
    parts.append(f"{row.get('epoch_seconds', 0):.1f}s")
    return "  ".join(parts)


def write_summary(run_dir: Path, doc: dict, lines: list[str]) -> None:
    """train.json and train.md beside the checkpoints: what this command did, for machines and people."""
    from ..checkpoint import atomic_write_text
    atomic_write_text(Path(run_dir) / "train.json", json.dumps(doc, indent=2, default=str))
    md = ["# Training run", "", f"- run folder: `{doc['run_dir']}`", f"- epochs: {doc['epochs']} "
          f"({doc['seconds']:.1f} s)", f"- stopped early: {doc['stopped_early'] or 'no'}", "", "```", *lines, "```",
          "", "Per-epoch metrics: `metrics.jsonl`; curve: `curve.png`; resolved config: `config.yaml`.", ""]
    atomic_write_text(Path(run_dir) / "train.md", "\n".join(md))


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (keys of TrainConfig)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set eps=8/255 --set method_args.lam=1"),
    data: Optional[str] = typer.Option(None, help="Dataset name (robustkit list); its modality picks the path."),
    data_dir: Optional[str] = typer.Option(None, help="Folder (or file) holding the data."),
    model: Optional[str] = typer.Option(None, help="Model name (robustkit list)."),
    method: Optional[str] = typer.Option(None, help="Training method (robustkit list), e.g. fast, pgd, trades, freelb."),
    eps: Optional[str] = typer.Option(None, help="Training threat radius, e.g. 0.1 or 8/255."),
    norm: Optional[str] = typer.Option(None, help="linf | l2"),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None),
    limit: Optional[int] = typer.Option(None, help="Use only N samples of each split."),
    name: Optional[str] = typer.Option(None, help="Run name (folder under --out-dir)."),
    out_dir: Optional[str] = typer.Option(None, help="Parent folder of run folders (default runs)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the run (default: the config's, else 0)."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps (default: the config's, "
                                                    "else auto)."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision: bf16 autocast on CPU, fp16 on CUDA."),
    log: List[str] = typer.Option([], "--log", help="Also track the run in mlflow | wandb | tensorboard "
                                                    "(repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in its folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder's run."),
    json_out: bool = JSON_OUT,
    verbose: bool = VERBOSE,
) -> None:
    """Train a model (standard or adversarial); writes runs/<name>/ with checkpoints and metrics."""
    flags = {"data": data, "data_dir": data_dir, "model": model, "method": method, "eps": eps, "norm": norm,
             "epochs": epochs, "batch_size": batch_size, "lr": lr, "limit": limit, "name": name, "out_dir": out_dir,
             "seed": seed, "device": device, "log": list(log) or None}
    if amp:
        from ..training.run import amp_precision
        flags["precision"] = amp_precision(device)
    train_from_options(config, set_, flags, resume=resume, overwrite=overwrite, json_out=json_out, verbose=verbose)


