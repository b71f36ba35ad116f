"""What every command shares: logging, errors, progress bars, loading a model with its data, threats."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError, ModuleNotFoundError)

# Options shared by the commands, declared once so they read the same everywhere.
TARGET = typer.Argument(None, help="Run folder or .safetensors checkpoint (the model).")
DATA = typer.Option(None, "--data", help="Dataset name (robustkit list); default: the checkpoint's.")
DATA_DIR = typer.Option(None, "--data-dir", help="Folder (or file) holding the data (else $ROBUSTKIT_DATA).")
EPS = typer.Option(None, "--eps", help="Perturbation budget: images an Lp radius (0.1, 8/255); texts the share "
                                       "of words that may change (0.2). Default: the checkpoint's / 0.2 for texts.")
NORM = typer.Option(None, "--norm", help="linf | l2 (images; default: the checkpoint's, else linf).")
PRESET = typer.Option("standard", "--preset", help="quick | standard | thorough (the modality's ensemble).")
SWEEP = typer.Option(None, "--sweep", help="Comma-separated eps list for an accuracy-vs-eps curve, e.g. 0,0.05,0.1.")
SEED = typer.Option(0, "--seed", help="Seed of every randomized step; same seed, same result.")
LIMIT = typer.Option(None, "--limit", help="Use only the first N evaluation samples.")
JSON_OUT = typer.Option(False, "--json", help="Print the result as JSON.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Log progress (one line per epoch/attack).")
WHICH = typer.Option("best", "--which", help="best | last checkpoint of a run folder.")


def rank() -> int:
    """This process's rank under torchrun (0 alone): only rank 0 prints and writes reports."""
    return int(os.environ.get("RANK", "0"))


def setup_logging(verbose: bool) -> None:
    level = logging.INFO if verbose and rank() == 0 else logging.WARNING
    logging.basicConfig(level=level, format=f"%(levelname)s{' [rank ' + str(rank()) + ']' if rank() else ''} "
                                            "%(message)s")


def progress(json_out: bool = False) -> bool:
    """Progress bars only for people: a TTY, not CI, not --json."""
    return sys.stderr.isatty() and not os.environ.get("CI") and not json_out


def fail(err: Exception) -> None:
    msg = err.args[0] if isinstance(err, KeyError) and err.args else err
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def parse_list(text: Optional[str], name: str) -> Optional[list[float]]:
    """'0,0.02,8/255' -> [0.0, 0.02, 0.0313...]; negatives are refused with the argument named."""
    if text is None:
        return None
    from .._validation import parse_fraction
    values = [parse_fraction(v, name) for v in text.split(",") if v.strip()]
    for v in values:
        if v < 0:
            raise ValueError(f"The '{name}' option must be a comma-separated list of numbers >= 0. Got {v} in "
                             f"{text!r} instead.")
    if not values:
        raise ValueError(f"The '{name}' option must list at least one number. Got {text!r} instead.")
    return values


def parse_eps(eps: Optional[str]) -> Optional[float]:
    from .._validation import parse_fraction
    return None if eps is None else parse_fraction(eps, "eps")


def parse_params(items: list[str]) -> dict:
    from ..config import parse_key_values
    return parse_key_values(items)


@dataclass
class Target:
    """A model with the data it is evaluated on, and the adapter of their modality."""

    model: Any
    meta: dict
    ds: Any
    modality: Any
    run_dir: Path
    data_name: str

    def checkpoint_doc(self) -> dict:
        m = self.meta
        return {"path": m.get("path"), "sha256": m.get("sha256"), "model": m.get("model"), "method": m.get("method"),
                "threat": m.get("threat")}

    def threat(self, eps: Optional[str], norm: Optional[str]):
        return self.modality.audit_threat(parse_eps(eps), norm, self.meta.get("threat"), self.ds)

    def eval_split(self, limit: Optional[int]):
        if limit is not None:
            from .._validation import check_number
            check_number(limit, "limit", owner="the command line", low=1, integer=True)
        return self.modality.eval_split(self.ds, limit)


def resolve_checkpoint(target: str | Path, which: str = "best") -> Path:
    """A run folder's ``best`` (or ``last``) checkpoint, or a checkpoint file as given."""
    from .._validation import check_choice
    check_choice(which, "which", ("best", "last"), owner="the command line")
    p = Path(target)
    if p.is_dir() and (p / f"{which}.safetensors").is_file():
        return p / f"{which}.safetensors"
    from ..checkpoint import resolve
    return resolve(p)


def load_target(target: Optional[str], data: Optional[str], data_dir: Optional[str], seed: int = 0,
                which: str = "best") -> Target:
    """Load the model and its data, refusing data whose shape or classes differ from the checkpoint's."""
    from ..checkpoint import load_model
    from ..modality import for_checkpoint
    if target is None:
        raise ValueError("The model is missing: give a run folder or checkpoint file as the first argument.")
    model, meta = load_model(resolve_checkpoint(target, which))
    modality = for_checkpoint(meta)
    spec = meta.get("data") or {}
    name = data or spec.get("name")
    if not name:
        raise ValueError("The 'data' option is required: the checkpoint records no dataset. Pass e.g. --data digits.")
    from ..data import dataset_modality
    if dataset_modality(name) != modality.name:  # before reading any file: the cheap, clear error first
        raise ValueError(f"The checkpoint {meta['path']!r} is a {modality.name} model but --data {name!r} is "
                         f"{dataset_modality(name)} data.")
    options = {"variant": spec["variant"]} if name == spec.get("name") and spec.get("variant") else {}
    ds = modality.load(name, data_dir=data_dir, seed=seed, **options)
    have = ds.spec()
    for key in ("input_shape", "num_classes"):
        if spec.get(key) is None or have.get(key) is None:
            continue
        want = list(spec[key]) if key == "input_shape" else int(spec[key])
        if want != have[key]:
            raise ValueError(f"The checkpoint {meta['path']!r} was trained on data with {key}={want} "
                             f"({spec.get('name', '?')!r}), but --data {name!r} gives {key}={have[key]}. "
                             "Evaluate it on the data it was trained for.")
    if spec.get("name") and spec["name"] != name:
        typer.secho(f"warning: the checkpoint was trained on {spec['name']!r}, evaluating on {name!r}.",
                    fg=typer.colors.YELLOW, err=True)
    run_dir = Path(target) if Path(target).is_dir() else Path(meta["path"]).parent
    return Target(model, meta, ds, modality, run_dir, name)


def pct(a: dict) -> str:
    return "n/a" if a.get("value") is None else f"{100 * a['value']:.2f}% [{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}]"
