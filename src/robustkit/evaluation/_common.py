"""Small helpers shared by the evaluation modules (batched forward passes, mode handling, JSON)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .._validation import unknown_name_error
from ..attacks.base import in_mode


def eval_mode(model):
    """Put every module in eval mode and restore each one's mode afterwards (the attacks' own helper)."""
    return in_mode(model, "eval")


@torch.no_grad()
def batched_logits(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).detach().float() for i in range(0, x.shape[0], batch_size)])


def _margin_loss(logits: torch.Tensor, y: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return (other.amax(1) - z_y).sum()


def input_gradients(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256, loss: str = "ce"
                    ) -> torch.Tensor | None:
    """Per-sample gradient of a loss ("ce" or "margin") w.r.t. the input; None when not differentiable."""
    loss_fn = _margin_loss if loss == "margin" else torch.nn.functional.cross_entropy
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].detach().clone().requires_grad_(True)
        try:
            with torch.enable_grad():
                value = loss_fn(model(xb), y[i:i + batch_size], reduction="sum")
                (g,) = torch.autograd.grad(value, xb, allow_unused=True)
        except RuntimeError:  # e.g. "element 0 of tensors does not require grad" (quantized, no_grad forward)
            return None
        if g is None:
            return None
        out.append(g.detach())
    return torch.cat(out)


def _shares(g: torch.Tensor | None, n: int) -> tuple[float, float, float]:
    if g is None:
        return 1.0, 0.0, 0.0
    flat = g.flatten(1)
    finite = torch.isfinite(flat).all(1)
    norms = torch.where(finite, flat.nan_to_num().norm(dim=1), torch.zeros(n, device=flat.device))
    zero = finite & (norms <= 1e-12)
    return float(zero.float().mean()), float((~finite).float().mean()), float(norms.median())


def gradient_health(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict:
    """Shares of samples whose input gradient is zero or non-finite (evidence for the checks).

    The verdict uses the logit-margin gradient (zero only when gradients are really masked); the
    cross-entropy gradient's zero share is reported too: it is high when logits are saturated.
    """
    n = int(x.shape[0])
    g = input_gradients(model, x, y, batch_size, loss="margin")
    zero, nonfinite, median = _shares(g, n)
    ce_zero = _shares(input_gradients(model, x, y, batch_size, loss="ce"), n)[0] if g is not None else 1.0
    return {"n": n, "differentiable": g is not None, "zero_share": zero, "nonfinite_share": nonfinite,
            "median_norm": median, "ce_zero_share": ce_zero}


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


def gallery_kind(doc: dict) -> str:
    """How a report shows an audit's example pairs: the modality adapter says ("images" or "sentences")."""
    from ..modality import get_modality
    return get_modality(doc.get("modality", "vision")).gallery_kind
