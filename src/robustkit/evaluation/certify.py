"""Randomized-smoothing certification — Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness
via Randomized Smoothing" (ICML 2019), algorithm CERTIFY; for texts, SAFER's smoothing over random word
substitutions (:func:`certify_substitutions`, in :mod:`robustkit.evaluation.certify_text`).

The smoothed classifier g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I). For each input:
n0 noisy samples pick the top class cA; n fresh samples count how often f predicts cA; the
one-sided Clopper-Pearson lower bound pA (level alpha) gives the certified L2 radius
sigma * Phi^-1(pA), or an abstention when pA < 1/2. Noise is added in input space (unclipped, as in
the paper). Certified accuracy at radius r = share of inputs with g(x) = y and radius >= r.

Example::

    out = certify(model, x, y, sigma=0.25, n0=100, n=1000, alpha=0.001, radii=[0, 0.25, 0.5])
    out["certified_accuracy"], out["abstain_rate"]

Both certificates share the two-stage vote (:func:`top_class_bound`) and the summary (:func:`summarize`).
"""
from __future__ import annotations

import time
from statistics import NormalDist

import torch
from tqdm.auto import tqdm

from .._validation import check_inputs, check_number
from ._common import eval_mode
from .stats import accuracy_with_ci, clopper_pearson_lower


def top_class_bound(selection_counts: torch.Tensor, counts: torch.Tensor, alpha: float) -> tuple[int, float]:
    """Cohen et al.'s two-stage vote: the top class cA of the selection draws, and the one-sided (1 - alpha)
    Clopper-Pearson lower bound of P(f = cA) from the fresh draws. Separate draws keep the bound valid:
    choosing cA on the same draws that bound it would bias pA upwards."""
    c_a = int(selection_counts.argmax())
    return c_a, clopper_pearson_lower(int(counts[c_a]), int(counts.sum()), alpha)


def summarize(prediction: list[int], majority: list[int], y: torch.Tensor, certified: list[torch.Tensor]) -> dict:
    """Certified accuracy at each budget (``certified[k]``: which inputs the certificate covers at budget k),
    abstain rate and the plug-in smoothed accuracy, each with its 95% Clopper-Pearson interval."""
    pred_t, y = torch.tensor(prediction, dtype=torch.long), y.cpu().long()
    correct = pred_t == y  # an abstention (-1) is never correct
    total = int(y.numel())
    return {"certified_accuracy": [accuracy_with_ci(int((correct & ok).sum()), total) for ok in certified],
            "abstain_rate": accuracy_with_ci(int((pred_t == -1).sum()), total),
            "smoothed_accuracy": accuracy_with_ci(int((torch.tensor(majority) == y).sum()), total)}


@torch.no_grad()
def _noise_counts(model, x: torch.Tensor, sigma: float, num: int, num_classes: int | None, batch_size: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Class counts of f(x + e) over ``num`` Gaussian draws, for one input x of shape (...)."""
    counts = None
    left = num
    while left > 0:
        b = min(batch_size, left)
        xb = x.unsqueeze(0).expand(b, *x.shape)
        noise = torch.randn(xb.shape, generator=generator, device=x.device, dtype=x.dtype)
        pred = model(xb + sigma * noise).argmax(1)
        k = num_classes or int(pred.max()) + 1
        c = torch.bincount(pred, minlength=k)
        counts = c if counts is None else counts + c
        num_classes = counts.numel()
        left -= b
    return counts


def certify(model, x: torch.Tensor, y: torch.Tensor, sigma: float, *, n0: int = 100, n: int = 10000,
            alpha: float = 0.001, radii: list[float] | None = None, batch_size: int = 1000, seed: int = 0,
            progress: bool = False) -> dict:
    """CERTIFY for every input of a batch. Shapes: x (N, ...), y (N,).

    Returns a JSON-ready dict: per-sample ``prediction`` (-1 = abstain), ``radius``; ``certified_accuracy``
    at each radius (with 95% CIs), ``abstain_rate``, ``smoothed_accuracy`` (plug-in majority vote over
    the n draws, no abstention), and the parameters.
    """
    check_inputs(x, y, owner="certify")
    sigma = check_number(sigma, "sigma", owner="certify", low=0, low_inclusive=False)
    n0 = check_number(n0, "n0", owner="certify", low=1, integer=True)
    n = check_number(n, "n", owner="certify", low=1, integer=True)
    alpha = check_number(alpha, "alpha", owner="certify", low=0, high=0.5, low_inclusive=False)
    batch_size = check_number(batch_size, "batch_size", owner="certify", low=1, integer=True)
    radii = [0.0, 0.25, 0.5, 0.75, 1.0] if radii is None else radii
    for r in radii:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or r < 0:
            raise ValueError(f"The 'radii' parameter of certify must be a list of numbers >= 0. Got {r!r} instead.")
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    t0 = time.perf_counter()
    y = y.long()
    preds, rads, majority = [], [], []
    phi_inv = NormalDist().inv_cdf
    with eval_mode(model):
        num_classes = None
        for i in tqdm(range(x.shape[0]), desc="certify", disable=not progress, leave=False):
            c0 = _noise_counts(model, x[i], sigma, n0, num_classes, batch_size, gen)
            num_classes = c0.numel()
            counts = _noise_counts(model, x[i], sigma, n, num_classes, batch_size, gen)
            majority.append(int(counts.argmax()))
            c_a, p_a = top_class_bound(c0, counts, alpha)
            if p_a < 0.5:
                preds.append(-1)
                rads.append(0.0)
            else:
                preds.append(c_a)
                rads.append(sigma * phi_inv(min(p_a, 1 - 1e-16)))
    rad_t = torch.tensor(rads, dtype=torch.float64)
    return {
        "sigma": sigma, "n0": n0, "n": n, "alpha": alpha, "seed": seed, "num_samples": int(y.numel()),
        "radii": [float(r) for r in radii],
        **summarize(preds, majority, y, [rad_t >= r for r in radii]),
        "prediction": preds, "radius": [round(r, 5) for r in rads],
        "seconds": round(time.perf_counter() - t0, 3),
    }


# Re-exported here so "certify.py holds randomized smoothing" stays true for readers and imports; imported
# last because certify_text uses the helpers above.
from .certify_text import certify_substitutions  # noqa: E402

__all__ = ["certify", "certify_substitutions", "summarize", "top_class_bound"]
