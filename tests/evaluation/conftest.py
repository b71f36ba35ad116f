"""Fixtures of the evaluation tests: a digits model, its gradient-masked twin, a saved run folder."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robustkit.checkpoint import save_model


class MaskedGradient(nn.Module):
    """Computes exactly the same function as ``inner`` but stops every gradient at the input.

    ``x.detach() + 0 * x`` has the value of x and the gradient 0 (a straight-through-zero trick):
    white-box attacks see a flat loss, so a naive evaluation reports the model as robust.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.detach() + 0 * x)


@pytest.fixture(scope="session")
def masked_twin(digits_model):
    return MaskedGradient(digits_model).eval()


@pytest.fixture(scope="session")
def eval_batch(digits):
    return digits.x_test[:96].clone(), digits.y_test[:96].clone()


@pytest.fixture()
def run_folder(tmp_path, digits, digits_model):
    path = tmp_path / "run"
    save_model(path / "best.safetensors", digits_model, data=digits.spec(), threat={"norm": "linf", "eps": 0.1},
               method={"name": "standard"})
    return path
