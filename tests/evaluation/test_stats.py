"""Confidence intervals against known values (R's binom.test / scipy), with and without scipy."""
import pytest

from robustkit.evaluation import stats

KNOWN_CP = [  # (k, n, lower, upper): exact 95% Clopper-Pearson, e.g. R: binom.test(5, 10)$conf.int
    (5, 10, 0.1870860, 0.8129140),
    (0, 10, 0.0, 0.3084971),
    (10, 10, 0.6915029, 1.0),
    (1, 20, 0.001265, 0.248733),
    (95, 100, 0.8871651, 0.9835681),
]


@pytest.mark.parametrize("k,n,lo,hi", KNOWN_CP)
def test_clopper_pearson_known_values(k, n, lo, hi):
    got = stats.clopper_pearson(k, n)
    assert got[0] == pytest.approx(lo, abs=1e-6) and got[1] == pytest.approx(hi, abs=1e-6)


@pytest.mark.parametrize("k,n,lo,hi", KNOWN_CP)
def test_beta_quantile_fallback_matches(k, n, lo, hi):
    """The no-scipy path gives the same bounds."""
    if k > 0:
        assert stats.beta_ppf_fallback(0.025, k, n - k + 1) == pytest.approx(lo, abs=1e-6)
    if k < n:
        assert stats.beta_ppf_fallback(0.975, k + 1, n - k) == pytest.approx(hi, abs=1e-6)


def test_one_sided_lower_bound():
    # Cohen et al.'s pA: (alpha/1)-quantile of Beta(k, n-k+1); for k = n it is alpha ** (1/n).
    assert stats.clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100), rel=1e-9)
    assert stats.clopper_pearson_lower(0, 100, 0.001) == 0.0


def test_wilson_known_value():
    lo, hi = stats.wilson(5, 10)
    assert lo == pytest.approx(0.2365931, abs=1e-6) and hi == pytest.approx(0.7634069, abs=1e-6)


def test_bad_counts():
    with pytest.raises(ValueError, match="'k' parameter of clopper_pearson"):
        stats.clopper_pearson(11, 10)
    with pytest.raises(ValueError, match="'n' parameter"):
        stats.clopper_pearson(0, 0)
