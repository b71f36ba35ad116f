"""Confidence intervals for accuracies (Wilson, Clopper-Pearson) and the beta quantile they need.

scipy is used when it is installed; otherwise a self-contained beta quantile (bisection on the
regularized incomplete beta function, evaluated by Lentz's continued fraction) gives the same
numbers to ~1e-10.
"""
from __future__ import annotations

import math
from statistics import NormalDist

from .._validation import check_number


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def beta_ppf_fallback(q: float, a: float, b: float) -> float:
    """Quantile of Beta(a, b) by bisection (no scipy)."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return 0.5 * (lo + hi)


def beta_ppf(q: float, a: float, b: float) -> float:
    try:
        from scipy.stats import beta
    except ImportError:  # pragma: no cover - exercised through beta_ppf_fallback in tests
        return beta_ppf_fallback(q, a, b)
    return float(beta.ppf(q, a, b))


def _check_counts(k, n, owner):
    n = check_number(n, "n", owner=owner, low=1, integer=True)
    k = check_number(k, "k", owner=owner, low=0, high=n, integer=True)
    return k, n


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) interval for a binomial proportion k/n.

    Example: ``clopper_pearson(5, 10)`` -> (0.1871, 0.8129).
    """
    k, n = _check_counts(k, n, "clopper_pearson")
    alpha = check_number(alpha, "alpha", owner="clopper_pearson", low=0, high=1, low_inclusive=False)
    lo = 0.0 if k == 0 else beta_ppf(alpha / 2, k, n - k + 1)
    hi = 1.0 if k == n else beta_ppf(1 - alpha / 2, k + 1, n - k)
    return lo, hi


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) lower confidence bound on a binomial proportion (Cohen et al.'s pA)."""
    k, n = _check_counts(k, n, "clopper_pearson_lower")
    alpha = check_number(alpha, "alpha", owner="clopper_pearson_lower", low=0, high=1, low_inclusive=False)
    return 0.0 if k == 0 else beta_ppf(alpha, k, n - k + 1)


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for k/n."""
    k, n = _check_counts(k, n, "wilson")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = k / n
    den = 1 + z * z / n
    center = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, center - half), min(1.0, center + half)


def accuracy_with_ci(k: int, n: int, method: str = "clopper-pearson") -> dict:
    """{"value", "k", "n", "ci95": [lo, hi], "ci_method"} — the form every accuracy takes in a report."""
    if n == 0:
        return {"value": None, "k": 0, "n": 0, "ci95": None, "ci_method": method}
    lo, hi = clopper_pearson(k, n) if method == "clopper-pearson" else wilson(k, n)
    return {"value": k / n, "k": int(k), "n": int(n), "ci95": [lo, hi], "ci_method": method}
