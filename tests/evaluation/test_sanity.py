"""Preflight contract check and gradient-masking checks: each common bug is caught with a fix."""
import pytest
import torch
from torch import nn

from robustkit import ThreatModel
from robustkit.evaluation import evaluate, gradient_masking_checks, preflight, worst_status

THREAT = ThreatModel("linf", 0.15)


def _by_name(checks):
    return {c["name"]: c for c in checks}


class Softmaxed(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).softmax(1)


class Randomized(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, x):
        return self.inner(x + 0.05 * torch.randn(x.shape, generator=self.gen))


class WithBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.net(x)


def test_preflight_passes_a_good_model(digits_model, eval_batch):
    checks = preflight(digits_model, *eval_batch)
    assert worst_status(checks) == "pass", checks
    assert set(_by_name(checks)) == {"inputs_in_bounds", "eval_mode", "returns_logits", "deterministic",
                                      "input_gradients"}


@pytest.mark.parametrize("make,name,status,fix", [
    (lambda m: Softmaxed(m), "returns_logits", "warn", "return logits"),
    (lambda m: Randomized(m), "deterministic", "warn", "EOT"),
    (lambda m: WithBatchNorm().train(), "eval_mode", "warn", "model.eval()"),
])
def test_preflight_catches_common_bugs(make, name, status, fix, digits_model, eval_batch):
    check = _by_name(preflight(make(digits_model), *eval_batch))[name]
    assert check["status"] == status and fix in check["message"]


def test_preflight_catches_normalization_outside_the_model(digits_model, eval_batch):
    x, y = eval_batch
    check = _by_name(preflight(digits_model, (x - 0.3) / 0.3, y))["inputs_in_bounds"]
    assert check["status"] == "fail" and "Normalize" in check["message"]


def test_preflight_flags_masked_gradients(masked_twin, eval_batch):
    check = _by_name(preflight(masked_twin, *eval_batch))["input_gradients"]
    assert check["status"] == "fail" and check["evidence"]["zero_share"] == 1.0


def test_masking_checks_pass_on_the_honest_model(digits_model, eval_batch):
    x, y = eval_batch
    res = evaluate(digits_model, x, y, THREAT, attacks=[("apgd-ce", {"steps": 20}), ("square", {"n_queries": 200})])
    checks = gradient_masking_checks(digits_model, x, y, THREAT, result=res, n=64)
    # PASS, not merely "not FAIL": a WARN on the honest model would be a false alarm the user must chase
    assert {c["name"]: c["status"] for c in checks if c["status"] != "pass"} == {}, checks
    assert {"gradients_not_masked", "accuracy_falls_with_eps", "large_eps_breaks_all", "black_box_not_stronger",
            "converges_with_steps", "single_step_not_stronger"} == set(_by_name(checks))


def test_masking_checks_flag_the_masked_twin(masked_twin, eval_batch):
    """Acceptance 2: the model that only masks gradients is flagged, with evidence."""
    x, y = eval_batch
    checks = _by_name(gradient_masking_checks(masked_twin, x, y, THREAT, n=48))
    assert checks["gradients_not_masked"]["status"] == "fail"
    assert checks["large_eps_breaks_all"]["status"] == "fail"
    assert checks["large_eps_breaks_all"]["evidence"]["accuracy"] > 0.3
    bb = checks["black_box_not_stronger"]
    assert bb["status"] == "fail" and bb["evidence"]["square1000"] < bb["evidence"]["pgd20"] - 0.2


def test_saturated_logits_are_reported(digits_model, eval_batch):
    class Saturated(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return 1e4 * self.inner(x)

    check = _by_name(preflight(Saturated(digits_model), *eval_batch))["input_gradients"]
    assert check["status"] == "warn" and "saturated" in check["message"]
