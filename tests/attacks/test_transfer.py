"""Transfer attack: crafted on a surrogate, the target is only queried (never differentiated)."""
import json

import pytest
import torch
from torch import nn

from robustkit import ThreatModel, attacks


class NoGradTarget(nn.Module):
    """Fails the test if anyone asks for its gradients."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        assert not torch.is_grad_enabled(), "the transfer attack differentiated the target model"
        return self.inner(x)


def test_transfer_breaks_target_without_its_gradients(digits_model, digits):
    x, y = digits.x_test[:64], digits.y_test[:64]
    threat = ThreatModel("linf", 0.25)
    target = NoGradTarget(digits_model)
    x_adv = attacks.create("transfer", threat, surrogate=digits_model, restarts=2)(target, x, y)
    assert bool((threat.norm_of(x_adv - x) <= 0.25 + 1e-6).all())
    with torch.no_grad():
        clean = (digits_model(x).argmax(1) == y).float().mean()
        acc = (digits_model(x_adv).argmax(1) == y).float().mean()
    assert acc < clean - 0.3


def test_transfer_config_is_reported_and_json_safe(digits_model):
    atk = attacks.create("transfer", ThreatModel("l2", 1.0), surrogate=digits_model, attack="apgd-ce",
                         attack_params={"steps": 10})
    p = atk.params()
    assert p["attack"] == "transfer" and p["surrogate"]["parameters"] > 0 and p["attack_params"] == {"steps": 10}
    json.dumps(p)


def test_transfer_bad_input(digits_model):
    threat = ThreatModel("linf", 0.1)
    with pytest.raises(TypeError, match="'surrogate' parameter of transfer"):
        attacks.create("transfer", threat)
    with pytest.raises(ValueError, match="Did you mean"):
        attacks.create("transfer", threat, surrogate=digits_model, attack="pgdd")
    with pytest.raises(TypeError, match="accepts"):
        attacks.create("transfer", threat, surrogate=digits_model, attack_params={"stepz": 3})
