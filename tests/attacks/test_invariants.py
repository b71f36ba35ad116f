"""The invariant every registered attack keeps (DESIGN decision 3), parametrized over the registry,
so a new attack is tested the day it is added."""
import pytest
import torch
from torch import nn

from robustkit import ThreatModel, attacks

FAST = {"steps": 5}  # keep iterative attacks short in tests
EXTRA = {"cw-l2": {"steps": 10, "binary_search_steps": 2}, "square": {"n_queries": 30},
         "noise": {"draws": 2}, "fgsm": {}}


def _params(name, surrogate=None):
    cls = attacks.get_class(name)
    import inspect
    accepted = {p.name for c in cls.__mro__ if c is not object for p in inspect.signature(c.__init__).parameters.values()}
    p = dict(EXTRA.get(name, {k: v for k, v in FAST.items() if k in accepted}))
    if "surrogate" in accepted:
        p["surrogate"] = surrogate
    return p


class TrainModeNet(nn.Module):
    """Has dropout + batch-norm so mode changes would show."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(0.1),
                                 nn.Linear(4 * 6 * 6, 10))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def net():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TrainModeNet()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", attacks.available())
def test_attack_invariants(name, norm, net, tiny_batch):
    x, y = tiny_batch
    eps = 0.1 if norm == "linf" else 0.5
    threat = ThreatModel(norm, eps)
    net.train()
    net.net[1].eval()  # a mixed-mode model: the attack must restore exactly this
    modes = [m.training for m in net.modules()]
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.123)
    grads = [p.grad.clone() for p in net.parameters()]
    bn_stats = net.net[1].running_mean.clone()

    atk = attacks.create(name, threat, seed=3, **_params(name, surrogate=net))
    x_adv = atk(net, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool((threat.norm_of(x_adv - x) <= eps + 1e-6).all())
    assert x_adv.min() >= -1e-6 and x_adv.max() <= 1 + 1e-6
    assert [m.training for m in net.modules()] == modes
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), grads))
    assert torch.equal(net.net[1].running_mean, bn_stats)
    # same seed, same result
    again = attacks.create(name, threat, seed=3, **_params(name, surrogate=net))(net, x, y)
    assert torch.equal(x_adv, again)


@pytest.mark.parametrize("name", attacks.available())
def test_attack_float64(name, digits_model, tiny_batch):
    x, y = tiny_batch
    model64 = _clone64(digits_model)
    threat = ThreatModel("linf", 0.1)
    x64 = x.double()
    x_adv = attacks.create(name, threat, seed=0, **_params(name, surrogate=model64))(model64, x64, y)
    assert x_adv.dtype == torch.float64
    assert float((x_adv - x64).abs().max()) <= 0.1 + 1e-9


def _clone64(model):
    import copy
    return copy.deepcopy(model).double()


def test_params_are_reported():
    atk = attacks.create("pgd", ThreatModel("linf", 0.1), steps=7, restarts=2)
    p = atk.params()
    assert p["attack"] == "pgd" and p["steps"] == 7 and p["restarts"] == 2 and p["threat"]["eps"] == 0.1
    assert p["step_size"] == pytest.approx(2.5 * 0.1 / 7) and "seed" in p
