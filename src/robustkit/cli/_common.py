"""What every command shares: logging, errors, progress bars, loading a model with its data, threats."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

# OSError covers a full disk, a read-only folder, a missing file: each becomes a one-line message.
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, ModuleNotFoundError)

# Options shared by the commands, declared once so they read the same everywhere.
TARGET = typer.Argument(None, help="The model: a run folder or .safetensors checkpoint, a TorchScript file, an "
                                   ".onnx file (black-box), timm:NAME, torchvision:NAME, package.module:callable, "
                                   "or (texts) a Hugging Face model folder or hf:ORG/NAME.")
DATA = typer.Option(None, "--data", help="Dataset name (robustkit list); default: the checkpoint's.")
DATA_DIR = typer.Option(None, "--data-dir", help="Folder (or file) holding the data (else $ROBUSTKIT_DATA).")
EPS = typer.Option(None, "--eps", help="Perturbation budget: images an Lp radius (0.1, 8/255); texts the share "
                                       "of words that may change (0.2). Default: the checkpoint's / 0.2 for texts.")
NORM = typer.Option(None, "--norm", help="linf | l2 (images; default: the checkpoint's, else linf).")
PRESET = typer.Option("standard", "--preset", help="quick | fast | standard | thorough (images; texts have quick, "
                                                    "standard, thorough): the modality's ensemble.")
SWEEP = typer.Option(None, "--sweep", help="Comma-separated eps list for an accuracy-vs-eps curve, e.g. 0,0.05,0.1.")
SEED = typer.Option(0, "--seed", help="Seed of every randomized step; same seed, same result.")
LIMIT = typer.Option(None, "--limit", help="Use only the first N evaluation samples.")
JSON_OUT = typer.Option(False, "--json", help="Print the result as JSON.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Log progress (one line per epoch/attack).")
WHICH = typer.Option("best", "--which", help="best | last checkpoint of a run folder.")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps (auto: CUDA when present).")
AMP = typer.Option(False, "--amp", help="Mixed-precision forward passes (bf16 on CPU, fp16 on CUDA).")
WEIGHTS = typer.Option(None, "--weights", help="Weights (.safetensors state dict) for a timm:, torchvision: or "
                                                "package.module:callable model.")
ALLOW_DOWNLOAD = typer.Option(False, "--allow-download", help="Let a Hugging Face hub id (or pretrained=true) "
                                                              "download; by default models load offline only.")
MODEL_ARG = typer.Option([], "--model-arg", help="key=value argument of a foreign model (repeatable): the "
                                                 "callable's keyword arguments, num_classes, mean/std for timm:/"
                                                 "torchvision:, max_length for Hugging Face.")
DATA_OPTION = typer.Option([], "--data-option", help="Dataset loader option key=value (repeatable), e.g. scale=255, "
                                                     "x_key=images, classes=cat,dog, text_column=review.")


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
    if isinstance(err, OSError) and err.strerror and type(err) not in (FileNotFoundError, FileExistsError):
        where = f" ({err.filename})" if err.filename else ""
        msg = (f"{err.strerror}{where}. Nothing already written was lost: free space or choose a writable folder "
               "(--out / --out-dir), then run the command again (train: --resume).")
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def write_or_rescue(write, doc: dict, what: str):
    """Run ``write()`` (the report files); if the disk says no, keep the computed result anyway.

    Hours of attacks must not be lost to a full disk or a folder made read-only meanwhile: the JSON
    document goes to the system's temporary folder and the error says where.
    """
    try:
        return write()
    except OSError as err:
        import json as _json
        import tempfile
        import time as _time
        rescue = Path(tempfile.gettempdir()) / f"robustkit-{what}-{int(_time.time())}-{os.getpid()}.json"
        try:
            rescue.write_text(_json.dumps(doc, indent=1, default=str))
            kept = f"the result was saved to {rescue}"
        except OSError:
            typer.echo(_json.dumps(doc, default=str))
            kept = "the result was printed above as JSON"
        raise OSError(err.errno, f"Could not write the {what} files ({err.strerror}); {kept}",
                      err.filename) from None


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
        x, y = self.modality.eval_split(self.ds, limit)
        device = getattr(self, "device", None)
        if device is not None and device.type != "cpu":
            x, y = self.modality.to_device(x, device), y.to(device)
        return x, y

    def place(self, device: str = "auto", amp: bool = False) -> "Target":
        """Move the model to ``--device`` (checked first) and wrap it for ``--amp``; data follows in eval_split."""
        from ..device import AutocastModel, resolve_device
        self.device = resolve_device(given(device, "auto"))
        if self.device.type != "cpu" and getattr(self.model, "robustkit_differentiable", True) is False:
            raise ValueError(f"The 'device' option is {str(self.device)!r}, but this model runs in ONNX Runtime / "
                             "quantized CPU kernels only. Use --device cpu.")
        self.model = self.model.to(self.device)
        if given(amp, False):
            self.model = AutocastModel(self.model, self.device).eval()
            self.meta = {**self.meta, "amp": True}
        return self


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
                which: str = "best", *, weights: Optional[str] = None, allow_download: bool = False,
                model_args: Optional[list[str]] = None, data_options: Optional[list[str]] = None) -> Target:
    """Load the model (any kind :func:`robustkit.models.foreign.load_any` reads) and its data, refusing data
    whose shape or classes differ from the checkpoint's. ``model_args``/``data_options`` are ``key=value``
    strings (--model-arg, --data-option)."""
    from ..models.foreign import ACCEPTED, detect_kind, load_any
    from ..modality import for_checkpoint
    weights, allow_download = given(weights, None), given(allow_download, False)
    model_args, data_options = given(model_args, None), given(data_options, None)
    if target is None:
        raise ValueError(f"The model is missing: give it as the first argument ({ACCEPTED}).")
    kind = detect_kind(target)
    margs = parse_params_as(model_args or [], "--model-arg")
    if kind == "checkpoint":
        model, meta = load_any(resolve_checkpoint(target, which), weights=weights, model_args=margs)
    else:
        model, meta = load_any(target, weights=weights, allow_download=allow_download, model_args=margs)
    modality = for_checkpoint(meta)
    spec = meta.get("data") or {}
    name = data or spec.get("name")
    if not name:
        if kind != "checkpoint":
            raise ValueError(f"The 'data' option is required: the {kind} model {str(target)!r} records no dataset. "
                             "Pass --data NAME (robustkit list) and --data-dir, e.g. --data image-folder --data-dir "
                             "FOLDER, --data npz --data-dir FILE.npz, or --data csv --data-dir FOLDER for texts.")
        raise ValueError("The 'data' option is required: the checkpoint records no dataset. Pass e.g. --data digits.")
    from ..data import dataset_modality
    if dataset_modality(name) != modality.name:  # before reading any file: the cheap, clear error first
        raise ValueError(f"The checkpoint {meta['path']!r} is a {modality.name} model but --data {name!r} is "
                         f"{dataset_modality(name)} data.")
    options = {"variant": spec["variant"]} if name == spec.get("name") and spec.get("variant") else {}
    if name == spec.get("name") and hasattr(modality, "data_defaults"):
        options.update(modality.data_defaults(spec))  # e.g. the columns a text model was trained on
    options.update(parse_params_as(data_options or [], "--data-option"))
    ds = load_data(modality, name, data_dir, seed, options)
    if hasattr(modality, "match_labels"):  # before the class-count checks: it names both label sets
        note = modality.match_labels(model, meta, ds, str(target), name)
        if note:
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
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
    if kind == "checkpoint":
        run_dir = Path(target) if Path(target).is_dir() else Path(meta["path"]).parent
    else:  # a foreign model's reports go to runs/<kind>-<name>/ under the current folder, never beside the user's file
        run_dir = Path("runs") / foreign_run_name(kind, str(target))
        check_outputs_fit(model, modality, ds, str(target), name)
    return Target(model, meta, ds, modality, run_dir, name)


def given(value, default):
    """``value``, or ``default`` when a command function was called from Python (the ``robustkit text`` aliases)
    without it and so received typer's declaration object instead of a value."""
    from typer.models import ParameterInfo
    return default if isinstance(value, ParameterInfo) else value


def check_outputs_fit(model, modality, ds, ref: str, data_name: str) -> None:
    """A foreign model records no classes: one forward pass on two evaluation samples says how many logits it
    gives, and a count other than the dataset's classes is an error now, not a broken report later."""
    import torch
    x, _ = modality.eval_split(ds, 2)
    try:
        with torch.no_grad():
            logits = modality.logits(model, x, 2)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"The model {ref!r} fails on --data {data_name!r} inputs of shape "
                         f"{tuple(x.shape) if hasattr(x, 'shape') else 'texts'}: {msg}. Check that it takes this "
                         "data's inputs (channels, size, range [0, 1], normalisation inside the model).") from None
    classes = getattr(ds, "num_classes", None)
    if logits.dim() != 2 or (classes is not None and logits.shape[1] != classes):
        raise ValueError(f"The model {ref!r} gives outputs of shape {tuple(logits.shape)} for {modality.size(x)} "
                         f"input(s), but --data "
                         f"{data_name!r} has {classes} classes: it must return (N, {classes}) logits. Pass e.g. "
                         f"--model-arg num_classes={classes}, or evaluate it on the data it was made for.")


def parse_params_as(items: list[str], option: str) -> dict:
    from ..config import parse_key_values
    return parse_key_values(list(items), option)


def load_data(modality, name: str, data_dir: Optional[str], seed: int, options: dict):
    """The modality's loader; an option the dataset does not take is a one-line error naming it."""
    import inspect

    from ..data import get_dataset_entry
    if options:
        loader = get_dataset_entry(name).loader
        params = inspect.signature(loader).parameters
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            accepted = [k for k, p in params.items() if p.kind == p.KEYWORD_ONLY and k not in ("data_dir", "seed")]
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                raise ValueError(f"The '--data-option' option {unknown} is not an option of dataset {name!r}. "
                                 f"Accepted: {', '.join(accepted) or 'none'}.")
    return modality.load(name, data_dir=data_dir, seed=seed, **options)


def foreign_run_name(kind: str, ref: str) -> str:
    """``runs/<this>``: a readable folder name for a foreign model's reports (kind + file stem or name)."""
    import re
    base = ref.split(":", 1)[1] if kind in ("timm", "torchvision", "huggingface") and ":" in ref else ref
    base = Path(base.rstrip("/")).stem if kind in ("torchscript", "onnx") else base
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "model"
    return f"{kind}-{slug}"[:80]


def pct(a: dict) -> str:
    return "n/a" if a.get("value") is None else f"{100 * a['value']:.2f}% [{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}]"
