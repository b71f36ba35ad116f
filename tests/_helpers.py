"""Helpers shared by tests (import as `from _helpers import ...`)."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from robustkit.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]


def data_root() -> str | None:
    """$ROBUSTKIT_DATA, else ../shared/data beside the repository (as CI lays it out)."""
    env = os.environ.get("ROBUSTKIT_DATA")
    if env:
        return env
    shared = ROOT.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def fashion_available() -> bool:
    try:
        load_dataset("fashion-mnist", data_dir=data_root(), limit=1)
        return True
    except FileNotFoundError:
        return False


def train_quick(model, x, y, *, epochs=1, lr=1e-3, batch_size=64, seed=0):
    """A few lines of plain training for fixtures (the trainer has its own tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(x.shape[0])
            for i in range(0, x.shape[0], batch_size):
                idx = perm[i:i + batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval()


