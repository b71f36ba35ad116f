"""Small helpers shared by the evaluation modules (batched forward passes, mode handling, JSON)."""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch
from torch import nn

from .._validation import unknown_name_error


@contextlib.contextmanager
def eval_mode(model) -> Iterator[None]:
    """Put every module in eval mode and restore each one's mode afterwards."""
    modules = list(model.modules()) if isinstance(model, nn.Module) else []
    modes = [m.training for m in modules]
    if isinstance(model, nn.Module):
        model.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.training = mode


@torch.no_grad()
def batched_logits(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).detach().float() for i in range(0, x.shape[0], batch_size)])


def input_gradients(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor | None:
    """Per-sample gradient of the cross-entropy w.r.t. the input; None when the model is not differentiable."""
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].detach().clone().requires_grad_(True)
        try:
            with torch.enable_grad():
                loss = torch.nn.functional.cross_entropy(model(xb), y[i:i + batch_size], reduction="sum")
                (g,) = torch.autograd.grad(loss, xb, allow_unused=True)
        except RuntimeError:  # e.g. "element 0 of tensors does not require grad" (quantized, no_grad forward)
            return None
        if g is None:
            return None
        out.append(g.detach())
    return torch.cat(out)


def gradient_health(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict:
    """Shares of samples whose input gradient is zero or non-finite (evidence for the checks)."""
    g = input_gradients(model, x, y, batch_size)
    n = int(x.shape[0])
    if g is None:
        return {"n": n, "differentiable": False, "zero_share": 1.0, "nonfinite_share": 0.0, "median_norm": 0.0}
    flat = g.flatten(1)
    finite = torch.isfinite(flat).all(1)
    norms = torch.where(finite, flat.nan_to_num().norm(dim=1), torch.zeros(n))
    zero = finite & (norms <= 1e-12)
    return {"n": n, "differentiable": True, "zero_share": float(zero.float().mean()),
            "nonfinite_share": float((~finite).float().mean()), "median_norm": float(norms.median())}


def check_preset(preset: Any, known, owner: str) -> str:
    if not isinstance(preset, str) or preset not in known:
        err = unknown_name_error("preset", preset, known)
        raise ValueError(f"The 'preset' parameter of {owner} must be one of {sorted(known)}. {err.args[0]}")
    return preset


def jsonable(obj: Any) -> Any:
    """Convert configs to JSON-safe values (tuples -> lists, tensors -> lists, modules -> a description)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist() if obj.numel() <= 64 else f"tensor{tuple(obj.shape)}"
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, nn.Module):
        return {"class": type(obj).__name__, "spec": jsonable(getattr(obj, "robustkit_spec", None))}
    return repr(obj)
