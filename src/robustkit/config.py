"""Typed configs. A YAML file maps 1:1 onto :class:`TrainConfig`; unknown keys are errors.

``--set key=value`` overrides parse values as YAML scalars (``--set eps=8/255`` works too).
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ._validation import check_choice, check_number, parse_fraction

# YAML 1.1 (PyYAML) reads ``1e-4`` as a *string*: a float needs a dot (``1.0e-4``). Users write
# ``lr: 1e-4`` and ``--set lr=1e-4`` all the time, so such strings become floats where a number fits.
_EXP_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _as_number(value):
    """``"1e-4"`` -> ``1e-4``; mappings and lists recursively; anything else unchanged."""
    if isinstance(value, str) and _EXP_FLOAT.match(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_number(v) for v in value]
    return value


def check_run_name(name: Any, *, owner: str = "TrainConfig") -> None:
    """A run name is one folder under out_dir: no separators, no '..', so it cannot escape it."""
    if name is None:
        return
    bad = (not isinstance(name, str) or not name.strip() or name.startswith(".") or "/" in name or "\\" in name
           or any(ch in name for ch in "\0\n\r"))
    if bad:
        raise ValueError(f"The 'name' parameter of {owner} must be a plain folder name (letters, digits, '-', '_', "
                         f"'.'; no path separators, not starting with '.'). Got {name!r} instead. Choose the "
                         "parent folder with out_dir (--out-dir).")


@dataclass
class TrainConfig:
    # run
    name: Optional[str] = None
    out_dir: str = "runs"
    seed: int = 0
    device: str = "auto"
    # data
    data: str = "digits"
    data_dir: Optional[str] = None
    limit: Optional[int] = None
    val_size: float = 0.1
    augment: Optional[str] = None  # images: "crop-flip" (the CIFAR recipe)
    # model
    model: str = "small-cnn"
    model_args: dict = field(default_factory=dict)
    init_from: Optional[str] = None
    # method and threat model
    method: str = "standard"
    method_args: dict = field(default_factory=dict)
    norm: str = "linf"
    eps: Any = 0.1
    eps_warmup_epochs: float = 0.0
    # optimization
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: list = field(default_factory=lambda: [0.5, 0.75])
    lr_min: float = 0.0
    warmup_epochs: float = 0.0
    grad_clip: Optional[float] = None
    accumulate: int = 1
    precision: str = "fp32"
    compile: bool = False
    # evaluation each epoch
    eval_size: int = 1000
    eval_steps: int = 10
    eval_batch_size: int = 500
    select_best_by: str = "auto"
    # catastrophic-overfitting guard (fgsm/fast)
    co_guard: str = "rollback"
    co_drop: float = 0.5   # relative loss of the best PGD validation accuracy
    co_gap: float = 0.3    # FGSM accuracy this far above PGD accuracy
    # several processes (torchrun): batch_size above is the global batch, split evenly across ranks
    sync_batchnorm: bool = False
    ddp_timeout: float = 300.0  # seconds a rank waits for the others before the job fails (no hang)
    # logging: tensorboard beside the run; "log" mirrors it into trackers too (mlflow, wandb, tensorboard)
    tensorboard: bool = False
    log: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "TrainConfig":
        check_run_name(self.name, owner="TrainConfig")
        self.eps = parse_fraction(self.eps, "eps")
        check_number(self.eps, "eps", owner="TrainConfig", low=0)
        check_number(self.seed, "seed", owner="TrainConfig", low=0, integer=True)
        check_number(self.epochs, "epochs", owner="TrainConfig", low=1, integer=True)
        check_number(self.batch_size, "batch_size", owner="TrainConfig", low=1, integer=True)
        check_number(self.lr, "lr", owner="TrainConfig", low=0, low_inclusive=False)
        check_number(self.momentum, "momentum", owner="TrainConfig", low=0, high=1)
        check_number(self.weight_decay, "weight_decay", owner="TrainConfig", low=0)
        check_number(self.eps_warmup_epochs, "eps_warmup_epochs", owner="TrainConfig", low=0)
        check_number(self.warmup_epochs, "warmup_epochs", owner="TrainConfig", low=0)
        check_number(self.accumulate, "accumulate", owner="TrainConfig", low=1, integer=True)
        check_number(self.eval_size, "eval_size", owner="TrainConfig", low=0, integer=True)
        check_number(self.eval_steps, "eval_steps", owner="TrainConfig", low=1, integer=True)
        check_number(self.co_drop, "co_drop", owner="TrainConfig", low=0, high=1)
        check_number(self.co_gap, "co_gap", owner="TrainConfig", low=0, high=1)
        check_number(self.val_size, "val_size", owner="TrainConfig", low=0, low_inclusive=False)
        check_number(self.ddp_timeout, "ddp_timeout", owner="TrainConfig", low=0, low_inclusive=False)
        if self.limit is not None:
            check_number(self.limit, "limit", owner="TrainConfig", low=1, integer=True)
        if self.grad_clip is not None:
            check_number(self.grad_clip, "grad_clip", owner="TrainConfig", low=0, low_inclusive=False)
        check_choice(self.norm, "norm", ("linf", "l2"), owner="TrainConfig")
        check_choice(self.optimizer, "optimizer", ("sgd", "adam", "adamw"), owner="TrainConfig")
        check_choice(self.schedule, "schedule", ("constant", "cyclic", "onecycle", "piecewise", "cosine"),
                     owner="TrainConfig")
        check_choice(self.precision, "precision", ("fp32", "bf16", "fp16"), owner="TrainConfig")
        check_choice(self.co_guard, "co_guard", ("rollback", "lower-step", "warn", "off"), owner="TrainConfig")
        check_choice(self.select_best_by, "select_best_by", ("auto", "robust", "clean"), owner="TrainConfig")
        for name in ("model_args", "method_args"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"The '{name}' parameter of TrainConfig must be a mapping. "
                                f"Got {getattr(self, name)!r} instead.")
        if self.augment is not None:
            check_choice(self.augment, "augment", ("crop-flip",), owner="TrainConfig")
        if isinstance(self.log, str):
            self.log = [v.strip() for v in self.log.split(",") if v.strip()]
        if not isinstance(self.log, list):
            raise TypeError(f"The 'log' parameter of TrainConfig must be a list of trackers. Got {self.log!r} instead.")
        for tracker in self.log:
            check_choice(tracker, "log", ("tensorboard", "mlflow", "wandb"), owner="TrainConfig")
        if "tensorboard" in self.log:
            self.tensorboard = True
        lam = self.method_args.get("lam")
        if lam is not None:
            check_number(lam, "method_args.lam", owner="TrainConfig", low=0)
        return self

    # -- YAML ------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        if not isinstance(d, dict):
            raise ValueError(f"{source} must be a mapping of keys to values. Got {type(d).__name__} instead.")
        known = cls.field_names()
        for key in d:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"Unknown key {key!r} in {source}.{hint} Known keys: {', '.join(known)}.")
        text_fields = {"name", "out_dir", "device", "data", "data_dir", "model", "init_from", "method", "norm",
                       "optimizer", "schedule", "precision", "select_best_by", "co_guard", "augment"}
        return cls(**{k: v if k in text_fields else _as_number(v) for k, v in d.items()})

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "TrainConfig":
        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise ValueError(f"Cannot read config file {str(path)!r}: {err.strerror}.") from None
        except yaml.YAMLError as err:
            raise ValueError(f"Config file {str(path)!r} is not valid YAML: {err}") from None
        return cls.from_dict(apply_overrides(d, overrides or []), source=str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``key=value`` (or ``key.sub=value`` for the *_args mappings) overrides to a dict."""
    d = dict(d)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"The '--set' option must look like key=value. Got {item!r} instead.")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        if "." in key:
            outer, inner = key.split(".", 1)
            sub = dict(d.get(outer) or {})
            sub[inner] = value
            d[outer] = sub
        else:
            d[key.strip()] = value
    return d


def parse_key_values(items: list[str], option: str = "--param") -> dict:
    """``["steps=20", "loss=dlr"]`` -> ``{"steps": 20, "loss": "dlr"}`` (values parsed as YAML scalars)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"The '{option}' option must look like key=value. Got {item!r} instead.")
        key, raw = item.split("=", 1)
        out[key.strip().replace("-", "_")] = _as_number(yaml.safe_load(raw))
    return out
