"""Shared fixtures: real data subsets and tiny models trained in seconds."""
from __future__ import annotations

import pytest
import torch

from robustkit.data import load_dataset
from robustkit.models import model_for_dataset

from _helpers import train_quick  # noqa: E402

@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_model(digits):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_for_dataset("small-cnn", digits)
    return train_quick(model, digits.x_train, digits.y_train, epochs=8)


@pytest.fixture()
def tiny_batch(digits):
    return digits.x_test[:32].clone(), digits.y_test[:32].clone()
