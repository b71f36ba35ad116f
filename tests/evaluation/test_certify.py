"""Randomized smoothing (Cohen et al. 2019) on a model trained with Gaussian noise augmentation."""
import pytest
import torch
import torch.nn.functional as F

from robustkit.evaluation import certify
from robustkit.models import model_for_dataset

SIGMA = 0.25


@pytest.fixture(scope="module")
def noise_model(digits):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_for_dataset("mlp", digits)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        x, y = digits.x_train, digits.y_train
        for _ in range(25):
            perm = torch.randperm(x.shape[0])
            for i in range(0, x.shape[0], 128):
                idx = perm[i:i + 128]
                loss = F.cross_entropy(model(x[idx] + SIGMA * torch.randn_like(x[idx])), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval()


def test_certified_accuracy_behaves(noise_model, digits):
    """Acceptance 4: radius 0 is close to the smoothed accuracy, accuracy decreases, abstentions counted."""
    x, y = digits.x_test[:40], digits.y_test[:40]
    out = certify(noise_model, x, y, SIGMA, n0=50, n=400, alpha=0.001, radii=[0, 0.1, 0.25, 0.5, 1.0], seed=0)
    acc = [r["value"] for r in out["certified_accuracy"]]
    assert acc == sorted(acc, reverse=True) and acc[-1] < acc[0]
    assert abs(acc[0] - out["smoothed_accuracy"]["value"]) <= 0.15
    assert acc[0] + out["abstain_rate"]["value"] <= 1.0 + 1e-9
    assert acc[0] > 0.6
    # certified radii never exceed sigma * Phi^-1(1 - alpha-ish bound for n draws)
    assert max(out["radius"]) <= SIGMA * 3.0
    again = certify(noise_model, x, y, SIGMA, n0=50, n=400, radii=[0, 0.25], seed=0)
    assert again["prediction"] == out["prediction"]


def test_certify_bad_input(noise_model, digits):
    x, y = digits.x_test[:4], digits.y_test[:4]
    with pytest.raises(ValueError, match="'sigma' parameter of certify"):
        certify(noise_model, x, y, -0.1)
    with pytest.raises(ValueError, match="'radii' parameter of certify"):
        certify(noise_model, x, y, 0.25, radii=[0.1, -1])
