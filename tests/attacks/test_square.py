"""Square attack (Andriushchenko et al. 2020): black-box, linf and l2, deterministic, early exit."""
import pytest
import torch
from torch import nn

from robustkit import ThreatModel, attacks


def _acc(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("norm,eps", [("linf", 0.15), ("l2", 1.5)])
def test_square_beats_random_noise(norm, eps, digits_model, digits):
    x, y = digits.x_test[:64], digits.y_test[:64]
    threat = ThreatModel(norm, eps)
    x_sq = attacks.create("square", threat, n_queries=300, seed=0)(digits_model, x, y)
    x_noise = attacks.create("noise", threat, draws=5, seed=0)(digits_model, x, y)
    assert bool((threat.norm_of(x_sq - x) <= eps + 1e-5).all())
    assert _acc(digits_model, x_sq, y) < _acc(digits_model, x_noise, y) - 0.1


def test_square_is_deterministic_with_a_seed(digits_model, tiny_batch):
    x, y = tiny_batch
    atk = attacks.create("square", ThreatModel("linf", 0.1), n_queries=50, seed=7)
    assert torch.equal(atk(digits_model, x, y), atk(digits_model, x, y))


def test_square_never_queries_fooled_samples(digits_model, tiny_batch):
    """Early exit: once every sample is fooled, no further query is spent."""
    calls = []

    class AlwaysWrong(nn.Module):
        def forward(self, x):
            calls.append(x.shape[0])
            return torch.nn.functional.one_hot(torch.full((x.shape[0],), 3), 10).float()

    x, y = tiny_batch
    y = torch.where(y == 3, torch.zeros_like(y), y)
    attacks.create("square", ThreatModel("linf", 0.1), n_queries=1000)(AlwaysWrong(), x, y)
    assert len(calls) == 1  # the initial stripes already fool everything


def test_square_targeted(digits_model, tiny_batch):
    x, y = tiny_batch
    target = (y + 1) % 10
    x_adv = attacks.create("square", ThreatModel("linf", 0.3), n_queries=300)(digits_model, x, y, target=target)
    with torch.no_grad():
        hit = (digits_model(x_adv).argmax(1) == target).float().mean()
    assert hit > 0.3


def test_square_bad_input(digits_model):
    with pytest.raises(ValueError, match="'n_queries' parameter of square"):
        attacks.create("square", ThreatModel("linf", 0.1), n_queries=0)
    with pytest.raises(ValueError, match="'p_init' parameter of square"):
        attacks.create("square", ThreatModel("linf", 0.1), p_init=1.5)
    flat = nn.Sequential(nn.Linear(16, 3))
    with pytest.raises(ValueError, match="image batch"):
        attacks.create("square", ThreatModel("linf", 0.1))(flat, torch.rand(4, 16), torch.zeros(4, dtype=torch.long))


def test_square_runs_stride_one_convnets_channels_last_and_gives_the_layout_back(monkeypatch):
    from robustkit.attacks import base
    from robustkit.models import create_model
    torch.manual_seed(0)
    model = create_model("small-cnn", input_shape=(1, 12, 12), num_classes=4, dropout=False).eval()
    x = torch.rand(16, 1, 12, 12)
    y = model(x).argmax(1)
    seen = []
    orig = base._ChannelsLastInput.__call__

    def spy(self, xb):
        seen.append(all(p.is_contiguous(memory_format=torch.channels_last) for p in self.model.parameters()
                        if p.dim() == 4))
        return orig(self, xb)
    monkeypatch.setattr(base._ChannelsLastInput, "__call__", spy)
    threat = ThreatModel("linf", 0.05)
    fast = attacks.create("square", threat, n_queries=40, seed=3)(model, x, y)
    assert seen and all(seen)  # the attack really ran channels-last
    assert all(p.is_contiguous() for p in model.parameters())  # and gave the weights their layout back
    monkeypatch.setattr(attacks.get_class("square"), "fast_layout", False)
    plain = attacks.create("square", threat, n_queries=40, seed=3)(model, x, y)
    assert len(seen) == 40  # no channels-last calls in the second run
    with torch.no_grad():  # same fp32 arithmetic: same decisions up to rounding
        assert torch.equal(model(fast).argmax(1), model(plain).argmax(1))
        assert (fast - plain).abs().max() < 1e-5


def test_strided_only_convnets_keep_their_layout():
    from robustkit.attacks.base import channels_last
    strided = nn.Sequential(nn.Conv2d(1, 4, 4, stride=2), nn.Flatten())
    dense = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    with channels_last(strided) as a, channels_last(dense) as b, channels_last(nn.Linear(3, 2)) as c:
        assert (a, b, c) == (False, True, False)
        assert dense[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert dense[0].weight.is_contiguous()
