"""The schedules inside APGD and Square, checked against the papers' formulas and the reference AutoAttack
code in ../shared/peers (issue 12: these had no test), and APGD-T's choice of targets."""
from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from robustkit import ThreatModel, attacks
from robustkit.attacks.apgd import _checkpoints, target_classes
from robustkit.attacks.square import _p_selection

PEERS = Path(__file__).resolve().parents[3] / "shared" / "peers"


def _reference(module: str):
    if not (PEERS / "autoattack").is_dir():
        pytest.skip(f"the reference AutoAttack is not at {PEERS / 'autoattack'} (../shared/peers)")
    if str(PEERS) not in sys.path:
        sys.path.insert(0, str(PEERS))
    return __import__(f"autoattack.{module}", fromlist=["x"])


def test_apgd_checkpoints_follow_the_paper_formula_exactly():
    # Croce & Hein 2020, section 3.2: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
    # checkpoints w_j = ceil(p_j * N_iter). Exact rational arithmetic: no float rounding can hide here.
    p = [Fraction(0), Fraction(22, 100)]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)))
    want = [math.ceil(q * 100) for q in p[1:] if math.ceil(q * 100) < 100]
    assert want == [22, 41, 57, 70, 80, 87, 93, 99]
    assert _checkpoints(100) == want


@pytest.mark.parametrize("steps", [5, 10, 20, 50, 100, 250, 1000])
def test_apgd_checkpoints_match_the_reference_code(steps):
    ref = _reference("autopgd_base")
    attack = ref.APGDAttack(lambda x: x, n_iter=steps, eps=0.1, device="cpu")
    # The reference's loop: counter3 counts iterations, a check fires when it reaches k, then
    # k = max(k - size_decr, n_iter_min) and counting starts again.
    k, counter, checks = attack.n_iter_2, 0, []
    for i in range(steps):
        counter += 1
        if counter == k:
            checks.append(i + 1)
            counter = 0
            k = max(k - attack.size_decr, attack.n_iter_min)
    # A check after the very last step (the reference makes one when the intervals land on it) changes
    # nothing: no step follows.
    assert _checkpoints(steps) == [c for c in checks if c < steps]


@pytest.mark.parametrize("n_queries", [100, 1000, 5000])
def test_square_p_schedule_matches_the_reference(n_queries):
    ref = _reference("square")
    square = ref.SquareAttack(lambda x: x, p_init=0.8, n_queries=n_queries, resc_schedule=True)
    assert [_p_selection(0.8, i, n_queries) for i in range(n_queries)] == \
           [square.p_selection(i) for i in range(n_queries)]
    assert _p_selection(0.8, 0, n_queries) == 0.8 and _p_selection(0.8, n_queries - 1, n_queries) == 0.8 / 512


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[: x.shape[0]] + 0 * x.flatten(1).sum(1, keepdim=True)


def test_apgd_t_targets_are_the_top_wrong_classes_never_the_true_one():
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0],    # correct (y=0): targets 1, 2, 3
                           [1.0, 9.0, 2.0, 8.0, 0.0]])   # misclassified (y=3 but argmax 1): targets 1, 2, 0
    y = torch.tensor([0, 3])
    got = torch.stack(target_classes(FixedLogits(logits), torch.zeros(2, 1, 2, 2), y, 3), dim=1)
    assert got.tolist() == [[1, 2, 3], [1, 2, 0]]
    assert not (got == y[:, None]).any()
    # n larger than the wrong classes: every wrong class once, no crash (2- and 3-class models).
    assert len(target_classes(FixedLogits(logits[:, :3]), torch.zeros(2, 1, 2, 2), torch.tensor([0, 2]), 9)) == 2


def test_apgd_t_attacks_each_chosen_target(monkeypatch):
    seen = []
    atk = attacks.create("apgd-dlr", ThreatModel("linf", 0.1), targeted=True, n_target_classes=3, steps=2)
    orig = type(atk)._run_restarts

    def spy(self, model, x, y, loss_target, generator, best, success_target):
        seen.append(loss_target.clone())
        return orig(self, model, x, y, loss_target, generator, best, success_target)
    monkeypatch.setattr(type(atk), "_run_restarts", spy)
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    atk(FixedLogits(logits), torch.full((2, 1, 2, 2), 0.5), torch.tensor([0, 4]))
    assert [t.tolist() for t in seen] == [[1, 3], [2, 2], [3, 1]]


class Linear(torch.nn.Module):
    """z = W x + b on a 4-pixel image: logits and boundary distances are known in closed form."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = torch.tensor(w), torch.tensor(b)

    def forward(self, x):
        return x.flatten(1) @ self.w.t() + self.b


def test_malt_margin_rule_targets_the_nearest_boundary_not_the_largest_logit():
    # Class 1 has the second-largest logit but a boundary far away in linf (z_0 - z_1 = 1, ||w_0 - w_1||_1 = 0.4:
    # distance 2.5); class 2's logit is lower but its boundary is near (2 / 8 = 0.25); class 3: 3 / 4 = 0.75.
    w = [[0.0] * 4, [0.1] * 4, [2.0] * 4, [-1.0] * 4]
    b = [5.0, 3.8, 0.6, 2.0]
    model = Linear(w, b)
    x, y = torch.full((1, 1, 2, 2), 0.1), torch.tensor([0])
    with torch.no_grad():
        z = model(x)[0]
    assert z.argsort(descending=True).tolist() == [0, 1, 3, 2]
    logit_rule = [int(t) for t in target_classes(model, x, y, 3, "logits")]
    margin_rule = [int(t) for t in target_classes(model, x, y, 3, "margin", "linf")]
    assert logit_rule == [1, 3, 2]
    assert margin_rule == [2, 3, 1]
    # l2: distances 1 / 0.2 = 5, 2 / 4 = 0.5, 3 / 2 = 1.5 -> the same order here.
    assert [int(t) for t in target_classes(model, x, y, 2, "margin", "l2")] == [2, 3]
    with pytest.raises(ValueError, match="target_rule"):
        attacks.create("apgd-dlr", ThreatModel("linf", 0.1), targeted=True, target_rule="closest")
