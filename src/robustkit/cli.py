"""`robustkit` command line: a thin layer over the Python API (same names, same defaults)."""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Attack, adversarially train and audit PyTorch classifiers.")
log = logging.getLogger("robustkit")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


def _progress(json_out: bool) -> bool:
    from .training.trainer import progress_default
    return progress_default() and not json_out


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError)


@app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the registered datasets, models, attacks and training methods."""
    from . import attacks
    from .data import available_datasets
    from .models import available_models
    from .training import available_objectives
    doc = {"datasets": available_datasets(), "models": available_models(), "attacks": attacks.available(),
           "methods": available_objectives()}
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    for section, items in doc.items():
        typer.echo(f"{section}:")
        if isinstance(items, dict):
            for k, v in items.items():
                typer.echo(f"  {k:<18} {v}")
        else:
            typer.echo("  " + ", ".join(items))


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (keys of TrainConfig)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set eps=8/255 --set method_args.lam=1"),
    data: Optional[str] = typer.Option(None, help="Dataset name (robustkit list)."),
    data_dir: Optional[str] = typer.Option(None, help="Folder (or file) holding the data."),
    model: Optional[str] = typer.Option(None, help="Model name."),
    method: Optional[str] = typer.Option(None, help="standard | fgsm | fast | pgd | trades | mart | mixed"),
    eps: Optional[str] = typer.Option(None, help="Threat radius, e.g. 0.1 or 8/255."),
    norm: Optional[str] = typer.Option(None, help="linf | l2"),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None),
    limit: Optional[int] = typer.Option(None, help="Use only the first N samples of each split."),
    name: Optional[str] = typer.Option(None, help="Run name (folder under --out-dir)."),
    out_dir: Optional[str] = typer.Option(None, help="Parent folder of run folders (default runs)."),
    seed: Optional[int] = typer.Option(None),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in its folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder's run."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a model (standard or adversarial); writes runs/<name>/ with checkpoints and metrics."""
    from .config import TrainConfig, apply_overrides
    from .training import train as train_fn
    _setup_logging(verbose)
    try:
        base = {}
        if config is not None:
            base = TrainConfig.from_yaml(config).to_dict()
        flags = {"data": data, "data_dir": data_dir, "model": model, "method": method, "eps": eps, "norm": norm,
                 "epochs": epochs, "batch_size": batch_size, "lr": lr, "limit": limit, "name": name,
                 "out_dir": out_dir, "seed": seed}
        base.update({k: v for k, v in flags.items() if v is not None})
        cfg = TrainConfig.from_dict(apply_overrides(base, set_), source=str(config or "command line"))
        if _is_text(cfg.data):  # the same command fine-tunes transformer classifiers on text data
            from .text import train_text as train_fn
        t0 = time.perf_counter()
        result = train_fn(cfg, resume=resume, overwrite=overwrite, progress=_progress(json_out))
    except USER_ERRORS as err:
        _fail(err)
        return
    seconds = time.perf_counter() - t0
    doc = {"run_dir": str(result.run_dir), "epochs": len(result.history), "best": result.best,
           "last": result.history[-1] if result.history else None, "stopped_early": result.stopped_early,
           "seconds": seconds}
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    for row in result.history:
        parts = [f"epoch {row['epoch'] + 1:>3}", f"loss {row.get('train_loss', float('nan')):.4f}",
                 f"val clean {row.get('val_clean_acc', float('nan')):.4f}"]
        if "val_robust_acc" in row:
            parts.append(f"val PGD {row['val_robust_acc']:.4f}")
        parts.append(f"{row.get('epoch_seconds', 0):.1f}s")
        typer.echo("  ".join(parts))
    if result.stopped_early:
        typer.secho(result.stopped_early, fg=typer.colors.YELLOW)
    typer.echo(f"run folder: {result.run_dir} ({seconds:.1f}s)")


def _is_text(data: str) -> bool:
    try:
        from .text import is_text_dataset
    except ImportError:  # the optional `text` extra is not installed
        return False
    return is_text_dataset(data)


def _parse_params(items: List[str]) -> dict:
    from .config import parse_key_values
    return parse_key_values(items)


@app.command()
def attack(
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint file or run folder."),
    model: Optional[str] = typer.Option(None, help="Without --checkpoint: train this model quickly (standard)."),
    data: str = typer.Option("digits", help="Dataset name."),
    data_dir: Optional[str] = typer.Option(None),
    attack_name: str = typer.Option("pgd", "--attack", help="Attack name (robustkit list)."),
    eps: str = typer.Option("0.1", help="Threat radius, e.g. 0.1 or 8/255."),
    norm: str = typer.Option("linf", help="linf | l2"),
    steps: Optional[int] = typer.Option(None),
    step_size: Optional[float] = typer.Option(None),
    restarts: Optional[int] = typer.Option(None),
    param: List[str] = typer.Option([], "--param", help="Extra attack parameter key=value (repeatable)."),
    limit: Optional[int] = typer.Option(1000, help="Attack the first N test samples."),
    batch_size: int = typer.Option(500),
    train_epochs: int = typer.Option(1, help="Epochs for the quick model when no --checkpoint is given."),
    out: Path = typer.Option(Path("runs/attack"), help="Folder for adversarial.npz, grid.png, attack.json."),
    seed: int = typer.Option(0),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Attack a model on a dataset's test split; prints clean and robust accuracy and the time taken."""
    import numpy as np
    import torch

    from . import attacks
    from ._validation import parse_fraction
    from .attacks.batched import attack_in_batches
    from .checkpoint import atomic_write_bytes, atomic_write_text, load_model
    from .data import load_dataset
    from .plots import adversarial_grid
    from .threat import ThreatModel
    _setup_logging(verbose)
    if _is_text(data):  # text classifiers: the word/character attacks of robustkit.text
        if checkpoint is None:
            _fail(ValueError("Text attacks need --checkpoint (a text run folder or checkpoint)."))
        from .text import audit_text
        try:
            params = {attack_name: _parse_params(param)}
            doc = audit_text(checkpoint, data, data_dir, limit=limit, attacks=[attack_name], attack_params=params,
                             seed=seed)
        except USER_ERRORS as err:
            _fail(err)
            return
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    try:
        ds = load_dataset(data, data_dir=data_dir, seed=seed)
        if checkpoint is not None:
            net, meta = load_model(checkpoint)
            from .training.run import check_model_fits_data
            check_model_fits_data(meta["model"], ds.spec(), f"checkpoint {str(checkpoint)!r}")
            source = {"checkpoint": meta["path"], "sha256": meta["sha256"]}
        elif model is not None:
            from .config import TrainConfig
            from .training import train as train_fn
            cfg = TrainConfig(name="model", out_dir=str(out), data=data, data_dir=data_dir, model=model,
                              epochs=train_epochs, seed=seed, eval_size=0, optimizer="adam", lr=1e-3,
                              schedule="constant", weight_decay=0.0)
            res = train_fn(cfg, overwrite=True, progress=_progress(json_out))
            net, meta = load_model(res.run_dir)
            source = {"model": model, "trained_epochs": train_epochs, "checkpoint": meta["path"]}
        else:
            raise ValueError("Give --checkpoint PATH (a file or run folder) or --model NAME.")
        params = {k: v for k, v in {"steps": steps, "step_size": step_size, "restarts": restarts}.items()
                  if v is not None}
        params.update(_parse_params(param))
        threat = ThreatModel(norm, parse_fraction(eps), ds.bounds)
        atk = attacks.create(attack_name, threat, seed=seed, **params)
        n = min(limit or ds.x_test.shape[0], ds.x_test.shape[0])
        x, y = ds.x_test[:n], ds.y_test[:n]
        t0 = time.perf_counter()
        x_adv, pred_clean, pred_adv = attack_in_batches(atk, net, x, y, batch_size=batch_size,
                                                        progress=_progress(json_out))
        seconds = time.perf_counter() - t0
    except USER_ERRORS as err:
        _fail(err)
        return
    clean = float((pred_clean == y).float().mean())
    robust = float((pred_adv == y).float().mean())
    out.mkdir(parents=True, exist_ok=True)
    buf = __import__("io").BytesIO()
    np.savez_compressed(buf, x=x.numpy(), x_adv=x_adv.numpy(), y=y.numpy(), pred_clean=pred_clean.numpy(),
                        pred_adv=pred_adv.numpy())
    atomic_write_bytes(out / "adversarial.npz", buf.getvalue())
    adversarial_grid(out / "grid.png", x, x_adv, y, pred_clean, pred_adv, ds.class_names)
    doc = {"clean_accuracy": clean, "robust_accuracy": robust, "n": n, "seconds": seconds,
           "images_per_second": n / max(seconds, 1e-9), "attack": atk.params(), "data": data, "seed": seed,
           "source": source, "files": {"adversarial": str(out / "adversarial.npz"), "grid": str(out / "grid.png")}}
    atomic_write_text(out / "attack.json", json.dumps(doc, indent=2))
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"{attack_name} ({norm}, eps={threat.eps:.4g}) on {n} {data} test images")
    typer.echo(f"  clean accuracy : {clean:.4f}")
    typer.echo(f"  robust accuracy: {robust:.4f}")
    typer.echo(f"  time           : {seconds:.2f}s ({n / max(seconds, 1e-9):.0f} img/s)")
    typer.echo(f"  wrote {out}/adversarial.npz, grid.png, attack.json")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the demo's runs and report."),
    epochs: int = typer.Option(15, help="Training epochs per model."),
    eps: str = typer.Option("0.2", help="Threat radius (digits pixels come in steps of 1/16)."),
    seed: int = typer.Option(0),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """The quick start on embedded data (scikit-learn digits): train standard and Fast-AT models,
    attack both with PGD-20, print clean vs robust accuracy, and write the run folders and a report."""
    from .demo import run_demo
    _setup_logging(False)
    doc = run_demo(out, epochs=epochs, eps=eps, seed=seed, progress=_progress(json_out),
                   echo=(lambda s: None) if json_out else typer.echo)
    if json_out:
        typer.echo(json.dumps(doc, indent=2))


def _register_optional() -> None:
    """Commands of other parts register themselves if present (audit, serve, ...)."""
    import importlib
    for mod in ("robustkit.cli_audit", "robustkit.cli_text"):
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise
            continue
        module.register(app)


_register_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
