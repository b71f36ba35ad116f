"""The threat model shared by attacks, training objectives and evaluation.

Projection, clipping and random starts are written once here (DESIGN decision 2).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from ._validation import check_choice, check_number

NORMS = ("linf", "l2")


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a (N,) vector so it broadcasts over a (N, ...) batch."""
    return v.view(-1, *([1] * (x.dim() - 1)))


@dataclass(frozen=True)
class ThreatModel:
    """An Lp ball of radius ``eps`` around each input, intersected with the input ``bounds``.

    ``bounds=None`` means unbounded (e.g. token embeddings); norms are always taken per example.
    """

    norm: str = "linf"
    eps: float = 8 / 255
    bounds: Optional[tuple[float, float]] = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_choice(self.norm, "norm", NORMS, owner="ThreatModel")
        object.__setattr__(self, "eps", check_number(self.eps, "eps", owner="ThreatModel", low=0.0))
        if self.bounds is not None:
            if len(self.bounds) != 2 or not float(self.bounds[0]) < float(self.bounds[1]):
                raise ValueError(f"The 'bounds' parameter of ThreatModel must be a pair (low, high) with low < high "
                                 f"or None. Got {self.bounds!r} instead.")
            object.__setattr__(self, "bounds", (float(self.bounds[0]), float(self.bounds[1])))

    # -- geometry -------------------------------------------------------------------------------
    def norm_of(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of a perturbation batch, shape (N,)."""
        flat = delta.flatten(1)
        return flat.abs().amax(1) if self.norm == "linf" else flat.norm(p=2, dim=1)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.bounds is None else x.clamp(*self.bounds)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor | float | None = None) -> torch.Tensor:
        """Nearest point (for linf: the coordinate-wise clamp) inside the ball around ``x`` and the bounds.

        ``eps`` may be a per-sample tensor (used by warm-up schedules and minimum-norm searches).
        """
        eps = self.eps if eps is None else eps
        delta = x_adv - x
        if self.norm == "linf":
            if isinstance(eps, torch.Tensor):
                e = _per_sample(eps.to(x.dtype), x)
                delta = torch.maximum(torch.minimum(delta, e), -e)
            else:
                delta = delta.clamp(-eps, eps)
        else:
            norms = delta.flatten(1).norm(p=2, dim=1)
            e = eps.to(x.dtype) if isinstance(eps, torch.Tensor) else torch.full_like(norms, eps)
            factor = torch.where(norms > e, e / norms.clamp_min(1e-12), torch.ones_like(norms))
            delta = delta * _per_sample(factor, x)
        return self.clip(x + delta)

    def random_start(self, x: torch.Tensor, generator: torch.Generator | None = None, *,
                     clip: bool = True) -> torch.Tensor:
        """A uniformly random point in the ball (linf: uniform cube; l2: uniform in the ball), clipped
        to the bounds unless ``clip=False`` (then it may lie outside the input range)."""
        if self.norm == "linf":
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            delta = (2 * u - 1) * self.eps
        else:
            d = x[0].numel()
            g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            g = g / _per_sample(g.flatten(1).norm(p=2, dim=1).clamp_min(1e-12), x)
            r = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / d)
            delta = g * _per_sample(r * self.eps, x)
        return self.clip(x + delta) if clip else x + delta

    def steepest_direction(self, grad: torch.Tensor) -> torch.Tensor:
        """The unit-norm ascent direction for this norm: sign for linf, normalized gradient for l2."""
        if self.norm == "linf":
            return grad.sign()
        n = grad.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        return grad / _per_sample(n, grad)

    def with_eps(self, eps: float) -> "ThreatModel":
        return replace(self, eps=eps)

    def to_dict(self) -> dict:
        return {"norm": self.norm, "eps": self.eps, "bounds": list(self.bounds) if self.bounds else None}

    @classmethod
    def from_dict(cls, d: dict) -> "ThreatModel":
        b = d.get("bounds")
        return cls(norm=d["norm"], eps=d["eps"], bounds=tuple(b) if b is not None else None)


@dataclass(frozen=True)
class SubstitutionThreat:
    """The discrete threat model of text: at most ``eps`` of a text's words may be substituted.

    Word- and character-level attacks read their budget (``max_share``) from it, so ``--eps`` and
    ``--sweep`` mean "how much may change" for sentences as they do for images. ``eps`` is a share
    in (0, 1]; 0 means no change is allowed (clean accuracy).
    """

    eps: float = 0.2
    norm: str = "word-share"
    bounds: None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", check_number(self.eps, "eps", owner="SubstitutionThreat", low=0.0, high=1.0))
        check_choice(self.norm, "norm", ("word-share",), owner="SubstitutionThreat")

    def with_eps(self, eps: float) -> "SubstitutionThreat":
        return replace(self, eps=eps)

    def to_dict(self) -> dict:
        return {"norm": self.norm, "eps": self.eps, "bounds": None}

    @classmethod
    def from_dict(cls, d: dict) -> "SubstitutionThreat":
        return cls(eps=d["eps"])


def threat_from_dict(d: dict):
    """Rebuild either threat model from its ``to_dict()`` form."""
    return SubstitutionThreat.from_dict(d) if d.get("norm") == "word-share" else ThreatModel.from_dict(d)
