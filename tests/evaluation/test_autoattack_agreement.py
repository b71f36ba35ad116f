"""Agreement with the original AutoAttack (issue 12): on a small trained model, the `standard` preset's robust
accuracy is at most the reference's + 1 sample. Skipped with a reason where ../shared/peers is absent."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from robustkit import ThreatModel
from robustkit.evaluation import evaluate

PEERS = Path(__file__).resolve().parents[3] / "shared" / "peers"
N = 32


@pytest.mark.slow
def test_standard_preset_is_at_least_as_strong_as_the_reference_autoattack(digits_model, digits):
    if not (PEERS / "autoattack").is_dir():
        pytest.skip(f"the reference AutoAttack is not at {PEERS / 'autoattack'} (../shared/peers)")
    sys.path.insert(0, str(PEERS))
    try:
        from autoattack import AutoAttack
    finally:
        sys.path.remove(str(PEERS))
    x, y = digits.x_test[:N], digits.y_test[:N]
    eps = 0.1
    ref = AutoAttack(digits_model, norm="Linf", eps=eps, version="standard", device="cpu", seed=0, verbose=False)
    with torch.random.fork_rng(devices=[]):
        x_ref = ref.run_standard_evaluation(x.clone(), y.clone(), bs=N)
    with torch.no_grad():
        ref_correct = int((digits_model(x_ref).argmax(1) == y).sum())
    ours = evaluate(digits_model, x, y, ThreatModel("linf", eps), "standard", seed=0)
    our_correct = round(ours.robust_accuracy * N)
    assert (x_ref - x).abs().max() <= eps + 1e-6
    assert our_correct <= ref_correct + 1, (our_correct, ref_correct)
