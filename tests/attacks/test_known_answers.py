"""Known answers on linear classifiers, where the optimal attacks are analytic."""
import pytest
import torch
from torch import nn

from robustkit import ThreatModel, attacks

BOUNDS = (-1e3, 1e3)  # wide bounds: no clipping binds


def _linear(n_classes, d=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, n_classes).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n_classes, d, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(n_classes, generator=g, dtype=torch.float64))
    x = torch.randn(64, d, generator=g, dtype=torch.float64)
    return lin, x, lin(x).argmax(1).detach()


def _margin_to(lin, x, y, j):
    z = lin(x).detach()
    return z.gather(1, y[:, None]).squeeze(1) - z.gather(1, j[:, None]).squeeze(1)


@pytest.mark.parametrize("eps", [0.01, 0.05])
def test_fgsm_linf_margin_drop_binary(eps):
    lin, x, y = _linear(2)
    j = 1 - y
    before = _margin_to(lin, x, y, j)
    x_adv = attacks.create("fgsm", ThreatModel("linf", eps, BOUNDS))(lin, x, y)
    after = _margin_to(lin, x_adv, y, j)
    w = lin.weight.detach()
    expected = eps * (w[y] - w[j]).abs().sum(1)
    assert torch.allclose(before - after, expected, rtol=1e-9, atol=1e-9)


def test_fgsm_linf_margin_drop_multiclass_margin_loss():
    lin, x, y = _linear(5)
    z = lin(x).detach().clone()
    z.scatter_(1, y[:, None], float("-inf"))
    j = z.argmax(1)  # the runner-up, whose margin the margin loss attacks
    eps = 0.01
    before = _margin_to(lin, x, y, j)
    x_adv = attacks.create("fgsm", ThreatModel("linf", eps, BOUNDS), loss="margin")(lin, x, y)
    w = lin.weight.detach()
    assert torch.allclose(before - _margin_to(lin, x_adv, y, j), eps * (w[y] - w[j]).abs().sum(1), atol=1e-9)


def test_pgd_l2_reaches_minimal_norm_boundary():
    lin, x, y = _linear(2)
    j = 1 - y
    w = lin.weight.detach()
    dist = _margin_to(lin, x, y, j) / (w[y] - w[j]).norm(dim=1)  # analytic minimal L2 distance
    for scale, expect_fooled in ((1.02, True), (0.98, False)):
        fooled = []
        for i in range(x.shape[0]):
            threat = ThreatModel("l2", float(dist[i]) * scale, BOUNDS)
            atk = attacks.create("pgd", threat, steps=50, step_size=float(dist[i]) * 0.2)
            xa = atk(lin, x[i:i + 1], y[i:i + 1])
            fooled.append(bool(lin(xa).argmax(1) != y[i]))
        assert all(f == expect_fooled for f in fooled), (scale, sum(fooled))


def test_pgd_l2_final_point_is_on_the_boundary_direction():
    """With early stopping off, L2 PGD inside a ball larger than the distance moves along w_j - w_y."""
    lin, x, y = _linear(2)
    j = 1 - y
    w = lin.weight.detach()
    atk = attacks.create("pgd", ThreatModel("l2", 0.5, BOUNDS), steps=10, random_start=False, early_stop=False)
    delta = atk(lin, x, y) - x
    direction = (w[j] - w[y]) / (w[j] - w[y]).norm(dim=1, keepdim=True)
    cos = torch.nn.functional.cosine_similarity(delta, direction, dim=1)
    assert bool((cos > 0.999).all())
    assert torch.allclose(delta.norm(dim=1), torch.full((x.shape[0],), 0.5, dtype=torch.float64), atol=1e-9)
