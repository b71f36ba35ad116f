"""`robustkit text ...`: the text path on the command line (train, attack, audit, list).

Registered by :mod:`robustkit.cli` when this module imports. ``robustkit train`` routes text
datasets to :func:`robustkit.text.train.train_text` as well; these commands work on their own.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import List, Optional

import typer

text_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Text classifiers: adversarial fine-tuning, word/character attacks, audits.")
USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError, ModuleNotFoundError)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _progress() -> bool:
    from .training.trainer import progress_default
    return progress_default()


@text_app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json")) -> None:
    """Text datasets, models, training methods and attacks."""
    from .text.data import available_text_datasets
    from .text.models import available_text_models
    from .text.audit import ATTACKS
    doc = {"datasets": available_text_datasets(), "models": available_text_models(),
           "methods": ["standard", "embed-pgd", "freelb", "smart", "augment"], "attacks": sorted(ATTACKS)}
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    for k, v in doc.items():
        typer.echo(f"{k}:")
        for item in (v.items() if isinstance(v, dict) else [(x, "") for x in v]):
            typer.echo(f"  {item[0]:<12} {item[1]}")


@text_app.command("train")
def train_cmd(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (keys of TrainConfig)."),
    set_: List[str] = typer.Option([], "--set", help="Override a key: --set epochs=1 --set model_args.max_length=32"),
    data_dir: Optional[str] = typer.Option(None, help="Folder holding the data (else $ROBUSTKIT_DATA)."),
    resume: bool = typer.Option(False, "--resume"),
    overwrite: bool = typer.Option(False, "--overwrite"),
    json_out: bool = typer.Option(False, "--json"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Fine-tune a text classifier (standard, embed-pgd, freelb, smart or augment)."""
    from .config import TrainConfig, apply_overrides
    from .text.train import train_text
    _setup_logging(verbose)
    try:
        base = TrainConfig.from_yaml(config).to_dict() if config else {}
        if data_dir:
            base["data_dir"] = data_dir
        cfg = TrainConfig.from_dict(apply_overrides(base, set_), source=str(config or "command line"))
        t0 = time.perf_counter()
        res = train_text(cfg, resume=resume, overwrite=overwrite, progress=_progress() and not json_out)
    except USER_ERRORS as err:
        _fail(err)
        return
    doc = {"run_dir": str(res.run_dir), "epochs": len(res.history), "best": res.best,
           "last": res.history[-1] if res.history else None, "seconds": time.perf_counter() - t0, **res.extra}
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    for row in res.history:
        typer.echo(f"epoch {row['epoch'] + 1:>3}  loss {row.get('train_loss', float('nan')):.4f}  "
                   f"dev acc {row['val_clean_acc']:.4f}  {row.get('epoch_seconds', 0):.0f}s")
    typer.echo(f"run folder: {res.run_dir} ({doc['seconds']:.0f}s)")


def _attack_params(items: List[str]) -> dict:
    from .config import parse_key_values
    return parse_key_values(items)


@text_app.command("attack")
def attack_cmd(
    checkpoint: Path = typer.Option(..., help="Text checkpoint file or run folder."),
    attack_name: str = typer.Option("word", "--attack", help="word | char"),
    data: Optional[str] = typer.Option(None, help="Dataset (default: the checkpoint's)."),
    data_dir: Optional[str] = typer.Option(None),
    limit: int = typer.Option(200, help="Attack the first N evaluation texts."),
    param: List[str] = typer.Option([], "--param", help="Attack parameter key=value (repeatable), e.g. max_share=0.2"),
    which: str = typer.Option("last", "--which", help="last | best checkpoint of a run folder."),
    out: Path = typer.Option(Path("runs/text-attack"), help="Folder for attack.json."),
    seed: int = typer.Option(0),
    json_out: bool = typer.Option(False, "--json"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run one word/character attack on a text model; prints clean and attacked accuracy."""
    from .checkpoint import atomic_write_text
    from .text.audit import audit_text
    _setup_logging(verbose)
    try:
        doc = audit_text(checkpoint, data, data_dir, limit=limit, attacks=[attack_name],
                         attack_params={attack_name: _attack_params(param)}, seed=seed, checkpoint=which)
    except USER_ERRORS as err:
        _fail(err)
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "attack.json", json.dumps(doc, indent=2))
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    a = doc["attacks"][attack_name]
    typer.echo(f"{attack_name} attack on {doc['data']['n']} {doc['data']['name']} texts")
    typer.echo(f"  clean accuracy   : {doc['clean_accuracy']:.4f}")
    typer.echo(f"  attacked accuracy: {a['accuracy']:.4f}  (success rate {a['attack_success_rate'] or 0:.3f}, "
               f"{100 * a['mean_share_changed']:.1f}% words changed, {a['mean_queries']:.0f} queries/example)")
    typer.echo(f"  wrote {out / 'attack.json'}")


@text_app.command("audit")
def audit_cmd(
    checkpoint: Path = typer.Argument(..., help="Text checkpoint file or run folder."),
    data: Optional[str] = typer.Option(None),
    data_dir: Optional[str] = typer.Option(None),
    limit: int = typer.Option(200, help="Audit the first N evaluation texts."),
    attacks: List[str] = typer.Option(["word", "char"], "--attack", help="Attacks to run (repeatable)."),
    which: str = typer.Option("last", "--which", help="last | best checkpoint of a run folder."),
    out: Optional[Path] = typer.Option(None, help="Report folder (default: <run folder>/audit)."),
    examples: int = typer.Option(10, help="Example sentences per attack in the report."),
    seed: int = typer.Option(0),
    json_out: bool = typer.Option(False, "--json"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Audit a text model: clean accuracy, accuracy under each attack, success rate, words changed, queries."""
    from .text.audit import audit_text, render_text_report
    _setup_logging(verbose)
    try:
        doc = audit_text(checkpoint, data, data_dir, limit=limit, attacks=attacks, seed=seed, checkpoint=which,
                         examples=examples)
    except USER_ERRORS as err:
        _fail(err)
        return
    folder = out or ((checkpoint if checkpoint.is_dir() else checkpoint.parent) / "audit")
    files = render_text_report(doc, folder)
    if json_out:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"clean accuracy {doc['clean_accuracy']:.4f} on {doc['data']['n']} texts")
    for name, a in doc["attacks"].items():
        typer.echo(f"  {name:<5} accuracy {a['accuracy']:.4f}  success {a['attack_success_rate'] or 0:.3f}  "
                   f"words changed {100 * a['mean_share_changed']:.1f}%  queries {a['mean_queries']:.0f}")
    typer.echo(f"report: {files['markdown']}, {files['html']}")


def register(app: typer.Typer) -> None:
    app.add_typer(text_app, name="text")
