"""One place for boundary checks, so every public function words its errors the same way.

Messages follow the pattern: "The 'eps' parameter of PGD must be a float >= 0. Got -0.1 instead."
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

import torch


def _where(owner: str | None) -> str:
    return f" of {owner}" if owner else ""


def param_error(name: str, expected: str, got: Any, owner: str | None = None) -> ValueError:
    return ValueError(f"The '{name}' parameter{_where(owner)} must be {expected}. Got {got!r} instead.")


def check_number(value: Any, name: str, *, owner: str | None = None, low: float | None = None,
                 high: float | None = None, low_inclusive: bool = True, integer: bool = False) -> float | int:
    """Check a scalar lies in a range; returns it as float (or int when integer=True)."""
    kind = "an integer" if integer else "a number"
    bad_type = isinstance(value, bool) or not isinstance(value, (int, float))
    if integer and isinstance(value, float) and not bad_type:
        bad_type = not value.is_integer()
    if bad_type or (not integer and not math.isfinite(float(value))):
        raise TypeError(f"The '{name}' parameter{_where(owner)} must be {kind}. Got {value!r} instead.")
    value = int(value) if integer else float(value)
    lo_ok = low is None or (value >= low if low_inclusive else value > low)
    hi_ok = high is None or value <= high
    if not (lo_ok and hi_ok):
        lo = "" if low is None else (f">= {low}" if low_inclusive else f"> {low}")
        hi = "" if high is None else f"<= {high}"
        rng = " and ".join(p for p in (lo, hi) if p)
        raise param_error(name, f"{kind} {rng}", value, owner)
    return value


def check_choice(value: Any, name: str, choices: Iterable[str], *, owner: str | None = None) -> str:
    choices = list(choices)
    if value not in choices:
        raise param_error(name, f"one of {choices}", value, owner)
    return value


def unknown_name_error(kind: str, name: Any, known: Iterable[str]) -> ValueError:
    """An error for an unknown registry name that suggests the nearest known names (as timm does).

    A ValueError (DESIGN conventions): the name is a bad value of an argument, not a missing key."""
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}.{hint} Available: {', '.join(known)}.")


def check_inputs(x: Any, y: Any = None, *, bounds: tuple[float, float] | None = None, owner: str | None = None,
                 atol: float = 1e-6) -> None:
    """Check an (x, y) batch at an attack/evaluation boundary."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"The 'x' parameter{_where(owner)} must be a torch.Tensor. Got {type(x).__name__} instead.")
    if not x.is_floating_point():
        raise TypeError(f"The 'x' parameter{_where(owner)} must be a floating-point tensor (float32 or float64). "
                        f"Got dtype {x.dtype} instead.")
    if x.dim() < 2 or x.shape[0] == 0:
        raise param_error("x", "a non-empty batch of shape (N, ...)", tuple(x.shape), owner)
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_bad = int((~finite).flatten(1).any(1).sum())
        raise ValueError(f"The 'x' parameter{_where(owner)} must contain only finite values. "
                         f"Got NaN or Inf in {n_bad} of {x.shape[0]} samples instead.")
    if bounds is not None:
        lo, hi = bounds
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - atol or xmax > hi + atol:
            raise ValueError(
                f"The 'x' parameter{_where(owner)} must lie inside the threat model's bounds [{lo}, {hi}]. "
                f"Got values in [{xmin:.4g}, {xmax:.4g}] instead. Inputs stay in their natural range; "
                "put normalization inside the model (robustkit.models.Normalize).")
    if y is None:
        return
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"The 'y' parameter{_where(owner)} must be a torch.Tensor of class indices. "
                        f"Got {type(y).__name__} instead.")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"The 'y' parameter{_where(owner)} must be an integer tensor of class indices. "
                        f"Got dtype {y.dtype} instead.")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"The 'y' parameter{_where(owner)} must have shape ({x.shape[0]},) to match the batch "
                         f"size of 'x'. Got shape {tuple(y.shape)} instead.")


def check_labels(y: torch.Tensor, num_classes: int, name: str = "y", owner: str | None = None) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"The '{name}' parameter{_where(owner)} must hold class indices in [0, {num_classes - 1}] "
                         f"(the model outputs {num_classes} logits). Got values in "
                         f"[{int(y.min())}, {int(y.max())}] instead.")


def parse_fraction(value: Any, name: str = "eps") -> float:
    """Accept 0.1, '0.1' or '8/255' (configs and the CLI write epsilons as fractions)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if "/" in text:
                num, den = text.split("/", 1)
                return float(num) / float(den)
            return float(text)
        except (ValueError, ZeroDivisionError):
            pass
    raise param_error(name, "a number or a fraction such as '8/255'", value)
