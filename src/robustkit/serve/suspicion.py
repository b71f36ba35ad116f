"""Attack-suspicion signals: how likely an input is adversarial, from the model's own behaviour.

Three candidates, each a score in [0, 1] (higher = more suspicious), measured against PGD on
Fashion-MNIST by ``benchmarks/suspicion.py`` (ROC AUC in BENCHMARKS.md, "Serving (issue 14)"):

- ``max_softmax``: 1 - the top softmax probability (free: one forward pass);
- ``instability``: share of K noisy copies (Gaussian, sigma) whose prediction differs from the clean
  prediction (adversarial points sit close to a decision boundary that small noise crosses back);
- ``vote_margin``: 1 - (top vote - runner-up vote) / K over the same noisy copies (the randomized
  smoothing vote margin).

The noisy copies ride along in the same forward pass as the clean batch, so the service pays one
model call of size (K + 1) x batch. Noise needs a continuous input space; for texts only
``max_softmax`` applies.
"""
from __future__ import annotations

import torch

SIGNALS = ("max_softmax", "instability", "vote_margin")


def noisy_copies(x: torch.Tensor, sigma: float, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """(K * N, ...) copies of x plus N(0, sigma^2) noise, copy-major (copy j of sample i at j * N + i)."""
    rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])
    return rep + sigma * torch.randn(rep.shape, generator=generator, dtype=x.dtype, device=x.device)


def scores_from_logits(clean_logits: torch.Tensor, noisy_logits: torch.Tensor | None, k: int) -> dict[str, torch.Tensor]:
    """All signals from the clean logits (N, C) and the noisy copies' logits (K * N, C), copy-major."""
    out = {"max_softmax": 1.0 - clean_logits.float().softmax(1).amax(1)}
    if noisy_logits is None or k == 0:
        return out
    n, c = clean_logits.shape
    pred = clean_logits.argmax(1)
    noisy = noisy_logits.argmax(1).view(k, n)
    out["instability"] = (noisy != pred.unsqueeze(0)).float().mean(0)
    votes = torch.zeros(n, c).scatter_add_(1, noisy.t().cpu(), torch.ones(n, k))
    top2 = votes.topk(min(2, c), dim=1).values
    margin = top2[:, 0] - (top2[:, 1] if c > 1 else 0)
    out["vote_margin"] = 1.0 - margin / k
    return out


@torch.inference_mode()
def suspicion_scores(model, x: torch.Tensor, *, sigma: float, k: int, generator: torch.Generator | None = None,
                     batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Every signal for a batch x (N, ...) of a continuous-input model (used by the benchmark)."""
    clean = torch.cat([model(x[i:i + batch_size]).float() for i in range(0, x.shape[0], batch_size)])
    noisy = None
    if k > 0:
        parts = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            parts.append(model(noisy_copies(xb, sigma, k, generator)).float().view(k, xb.shape[0], -1))
        noisy = torch.cat(parts, dim=1).reshape(-1, clean.shape[1])
    return scores_from_logits(clean, noisy, k)
