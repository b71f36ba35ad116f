import pytest
import torch

from robustkit import ThreatModel
from robustkit.threat import SubstitutionThreat, threat_from_dict


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_project_lands_in_ball_and_bounds(norm):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    t = ThreatModel(norm, 0.3)
    far = x + 5 * torch.randn(x.shape, generator=g)
    p = t.project(far, x)
    assert p.min() >= 0 and p.max() <= 1
    assert bool((t.norm_of(p - x) <= 0.3 + 1e-6).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_inside_and_seeded(norm):
    x = torch.full((8, 3, 4, 4), 0.5)
    t = ThreatModel(norm, 0.2)
    a = t.random_start(x, torch.Generator().manual_seed(1))
    b = t.random_start(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert bool((t.norm_of(a - x) <= 0.2 + 1e-6).all())
    assert bool((t.norm_of(a - x) > 0).all())


def test_unclipped_random_start_keeps_its_spread_at_the_bounds():
    # MNIST-like: every pixel at 0. Clipped, half the start sits exactly on the bound; unclipped it
    # keeps the whole cube (Wong et al.'s Fast-AT code), and FGSM still returns a valid image.
    from robustkit import attacks

    x = torch.zeros(64, 1, 8, 8)
    t = ThreatModel("linf", 0.3)
    g = torch.Generator().manual_seed(0)
    clipped, free = t.random_start(x, g, clip=True), t.random_start(x, g, clip=False)
    assert (clipped == 0).float().mean() > 0.45 and clipped.min() >= 0
    assert (free < 0).float().mean() > 0.45 and free.min() >= -0.3 - 1e-6
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    y = torch.zeros(64, dtype=torch.long)
    x_adv = attacks.create("fgsm", t, step_size=0.375, random_start=True, clip_start=False, seed=0)(model, x, y)
    assert x_adv.min() >= 0 and x_adv.max() <= 0.3 + 1e-6


def test_project_inside_is_identity():
    x = torch.full((4, 10), 0.5)
    t = ThreatModel("l2", 1.0)
    inside = x + 0.01
    assert torch.allclose(t.project(inside, x), inside)


def test_per_sample_eps():
    x = torch.zeros(2, 4)
    t = ThreatModel("linf", 1.0, bounds=None)
    p = t.project(torch.ones(2, 4), x, eps=torch.tensor([0.1, 0.5]))
    assert torch.allclose(p[0], torch.full((4,), 0.1)) and torch.allclose(p[1], torch.full((4,), 0.5))


@pytest.mark.parametrize("kwargs, match", [
    ({"norm": "l3", "eps": 0.1}, "'norm' parameter of ThreatModel"),
    ({"norm": "linf", "eps": -0.1}, r"'eps' parameter of ThreatModel must be a number >= 0.0. Got -0.1"),
    ({"norm": "linf", "eps": 0.1, "bounds": (1.0, 0.0)}, "'bounds' parameter"),
])
def test_bad_threat_models(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ThreatModel(**kwargs)


def test_eps_must_be_a_number():
    with pytest.raises(TypeError, match="'eps'"):
        ThreatModel("linf", float("nan"))


def test_substitution_threat_round_trips_and_rescales():
    t = SubstitutionThreat(0.25)
    assert t.to_dict() == {"norm": "word-share", "eps": 0.25, "bounds": None}
    assert threat_from_dict(t.to_dict()) == t and threat_from_dict(ThreatModel().to_dict()) == ThreatModel()
    assert t.with_eps(0.1) == SubstitutionThreat(0.1) and t.eps == 0.25
    assert SubstitutionThreat(0).eps == 0.0  # 0: no word may change (clean accuracy)


@pytest.mark.parametrize("eps, error", [(-0.1, ValueError), (1.5, ValueError), ("0.2", TypeError)])
def test_bad_substitution_threats(eps, error):
    with pytest.raises(error, match="'eps' parameter of SubstitutionThreat must be a number"):
        SubstitutionThreat(eps)
