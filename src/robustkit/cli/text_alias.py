"""`robustkit text ...`: the old spelling of the text commands, kept for one release.

Each alias says what to type instead and then runs the one command that serves every modality.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from .attack import attack as attack_cmd
from .audit import audit as audit_cmd
from .list import list_cmd
from .train import train_from_options

text_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Deprecated: use `robustkit train/attack/audit/list` for text models too.")
app.add_typer(text_app, name="text", hidden=True)


def _moved(instead: str) -> None:
    typer.secho(f"note: `robustkit text ...` is deprecated and goes away in the next release; type "
                f"`{instead}` instead.", fg=typer.colors.YELLOW, err=True)


@text_app.command("list")
def text_list(json_out: bool = typer.Option(False, "--json"), seed: int = typer.Option(0, "--seed")) -> None:
    _moved("robustkit list")
    list_cmd(json_out=json_out, seed=seed)


@text_app.command("train")
def text_train(
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
    set_: List[str] = typer.Option([], "--set"),
    data_dir: Optional[str] = typer.Option(None),
    resume: bool = typer.Option(False, "--resume"),
    overwrite: bool = typer.Option(False, "--overwrite"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    json_out: bool = typer.Option(False, "--json"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    _moved("robustkit train --config ... --set ...")
    train_from_options(config, set_, {"data_dir": data_dir, "seed": seed}, resume=resume, overwrite=overwrite, json_out=json_out,
                       verbose=verbose)


@text_app.command("attack")
def text_attack(
    checkpoint: str = typer.Option(..., "--checkpoint"),
    attack_name: str = typer.Option("word", "--attack"),
    data: Optional[str] = typer.Option(None),
    data_dir: Optional[str] = typer.Option(None),
    limit: int = typer.Option(200),
    param: List[str] = typer.Option([], "--param"),
    which: str = typer.Option("best", "--which"),
    out: Optional[Path] = typer.Option(None),
    seed: int = typer.Option(0),
    json_out: bool = typer.Option(False, "--json"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    _moved(f"robustkit attack {checkpoint} --attack {attack_name} ...")
    attack_cmd(target=checkpoint, model=None, checkpoint=None, data=data, data_dir=data_dir, attack_name=attack_name,
               eps=None, norm=None, steps=None, step_size=None, restarts=None, param=param, limit=limit,
               batch_size=64, train_epochs=1, which=which, out=out, seed=seed, json_out=json_out, verbose=verbose)


@text_app.command("audit")
def text_audit(
    checkpoint: str = typer.Argument(...),
    data: Optional[str] = typer.Option(None),
    data_dir: Optional[str] = typer.Option(None),
    limit: int = typer.Option(200),
    attacks: List[str] = typer.Option([], "--attack"),
    which: str = typer.Option("best", "--which"),
    out: Optional[Path] = typer.Option(None),
    examples: int = typer.Option(10),
    seed: int = typer.Option(0),
    json_out: bool = typer.Option(False, "--json"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    _moved(f"robustkit audit {checkpoint} ...")
    audit_cmd(target=checkpoint, data=data, data_dir=data_dir, preset="standard", attack_names=attacks, param=[],
              eps=None, norm=None, sweep=None, sweep_preset="quick", noise=None, certify_sigma=None, certify_n=1000,
              certify_limit=100,
              surrogate=None, limit=limit, which=which, out=out, max_minutes=None, seed=seed, seeds=1, batch_size=64,
              examples=examples, weights=None, allow_download=False, model_arg=[], data_option=[], device="auto",
              amp=False, fresh=False, json_out=json_out, verbose=verbose)  # every option explicit: the defaults
              # of a typer command are OptionInfo objects when it is called as a plain function
