"""Projected-gradient perturbations of token embeddings (DESIGN decision 9).

The perturbation ``delta`` (N, L, D) is added to the word embeddings; it is zero on padding and the
norm is taken per example through the shared :class:`~robustkit.ThreatModel` (``bounds=None``).

Scale: ``eps`` and ``step_size`` are *relative to the embedding scale* so one number means the same
for every model. With ``s`` the mean L2 norm of a token embedding (l2) or the RMS of embedding
entries (linf), an example of ``n`` real tokens gets the radius ``eps · s · sqrt(n)`` (l2: on
average each token moves by ``eps`` of its own norm) or ``eps · s`` (linf, per coordinate).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..threat import ThreatModel


def embedding_scale(model: nn.Module, norm: str) -> float:
    """Mean token-embedding L2 norm (l2) or RMS entry (linf) of the model's word-embedding matrix."""
    w = model.embedding_layer().weight.detach().float()
    return float(w.norm(dim=1).mean()) if norm == "l2" else float(w.pow(2).mean().sqrt())


def radius(threat: ThreatModel, mask: torch.Tensor, scale: float, rel: float) -> torch.Tensor:
    """Per-example absolute radius (N,) for a relative size ``rel`` (eps or step size)."""
    n = mask.sum(1).to(torch.float32)
    return rel * scale * (n.sqrt() if threat.norm == "l2" else torch.ones_like(n))


def _expand(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1)


def random_delta(threat: ThreatModel, shape: torch.Size, mask3: torch.Tensor, r: torch.Tensor,
                 generator: torch.Generator | None, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A random point of the ball of per-example radius ``r``, zero on padding."""
    unit = threat.with_eps(1.0).random_start(torch.zeros(shape, dtype=dtype, device=device), generator)
    return unit * _expand(r.to(dtype)) * mask3


def ascend(threat: ThreatModel, delta: torch.Tensor, grad: torch.Tensor, mask3: torch.Tensor, step: torch.Tensor,
           eps: torch.Tensor) -> torch.Tensor:
    """One projected steepest-ascent step (sign for linf, normalized gradient for l2), padding kept at 0."""
    direction = threat.steepest_direction(grad * mask3)
    moved = delta + _expand(step.to(delta.dtype)) * direction
    zero = torch.zeros_like(delta)
    return threat.project(moved, zero, eps=eps.to(delta.dtype)) * mask3


def embedding_pgd(model: nn.Module, inputs: dict, threat: ThreatModel, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                  *, steps: int, step_size: float, random_start: bool = True,
                  generator: torch.Generator | None = None, init_scale: float = 1.0) -> torch.Tensor:
    """PGD on the word embeddings maximizing ``loss_fn(logits)``; returns the detached ``delta``.

    Gradients are taken with ``torch.autograd.grad`` with respect to ``delta`` only, so no parameter
    gradients are left behind. The caller chooses the model's mode.
    """
    mask = inputs["attention_mask"]
    emb = model.embed(inputs["input_ids"]).detach()
    mask3 = mask.unsqueeze(-1).to(emb.dtype)
    scale = embedding_scale(model, threat.norm)
    eps = radius(threat, mask, scale, threat.eps)
    step = radius(threat, mask, scale, step_size)
    if random_start:
        delta = random_delta(threat, emb.shape, mask3, eps * init_scale, generator, emb.dtype, emb.device)
    else:
        delta = torch.zeros_like(emb)
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model.forward_embeds(emb + delta, mask, inputs.get("token_type_ids"))
        (g,) = torch.autograd.grad(loss_fn(logits), delta)
        delta = ascend(threat, delta.detach(), g, mask3, step, eps)
    return delta.detach()


def ce_loss(y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda logits: F.cross_entropy(logits.float(), y, reduction="sum")


def kl_loss(p_clean: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """KL(p_clean || p(x + delta)), SMART's inner objective (one direction of the symmetric KL)."""
    return lambda logits: F.kl_div(F.log_softmax(logits.float(), -1), p_clean, reduction="sum")
