"""Fixtures of the hardening tests: a tiny adversarially trained digits run folder (seconds to train)."""
from __future__ import annotations


import pytest
import torch

from robustkit.checkpoint import save_model


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, digits, digits_model):
    """A run folder holding the session's digits small-cnn (best + last, config, metrics), threat eps 0.1."""
    folder = tmp_path_factory.mktemp("runs") / "digits-src"
    folder.mkdir()
    for name in ("best", "last"):
        save_model(folder / f"{name}.safetensors", digits_model, data=digits.spec(),
                   threat={"norm": "linf", "eps": 0.1, "bounds": [0.0, 1.0]},
                   method={"name": "standard", "args": {}, "objective": {}},
                   extra={"config": {"data": "digits", "model": "small-cnn", "method": "standard", "epochs": 1,
                                     "batch_size": 64, "eps": 0.1, "val_size": 0.1}})
    (folder / "config.yaml").write_text("data: digits\nmodel: small-cnn\n")
    (folder / "metrics.jsonl").write_text('{"epoch": 0}\n')
    return folder


@pytest.fixture()
def accuracy():
    def acc(model, x, y):
        with torch.no_grad():
            return float((model(x).argmax(1) == y).float().mean())
    return acc
