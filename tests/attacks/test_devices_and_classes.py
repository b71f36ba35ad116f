"""Bugs of the audit (issue 12), each with a test that failed before its fix."""
from __future__ import annotations

import pytest
import torch

from robustkit import ThreatModel, attacks, evaluate
from robustkit.attacks.base import dlr_loss, margin
from robustkit.evaluation import PRESETS
from robustkit.models import create_model


def _record_draws(monkeypatch):
    """Wrap torch's random draws: any draw given a generator must also name that generator's device
    (on CUDA a CPU draw with a CUDA generator raises; on the CPU it would pass silently)."""
    bad = []
    for name in ("rand", "randint", "randn", "randperm"):
        real = getattr(torch, name)

        def wrapped(*args, _real=real, _name=name, **kw):
            gen = kw.get("generator")
            if gen is not None and "device" not in kw:
                bad.append(_name)
            return _real(*args, **kw)
        monkeypatch.setattr(torch, name, wrapped)
    return bad


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_draws_follow_the_inputs_device(monkeypatch, norm):
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=4).eval()
    x = torch.rand(6, 1, 8, 8)
    y = model(x).argmax(1)
    bad = _record_draws(monkeypatch)
    attacks.create("square", ThreatModel(norm, 0.3 if norm == "linf" else 2.0), n_queries=30)(model, x, y)
    assert bad == [], f"random draws without device=: {sorted(set(bad))}"


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_runs_on_two_and_three_classes(classes, preset):
    torch.manual_seed(classes)
    model = create_model("mlp", input_shape=(1, 4, 4), num_classes=classes).eval()
    x = torch.rand(12, 1, 4, 4)
    y = model(x).argmax(1)
    threat = ThreatModel("linf", 0.02)  # small: samples survive APGD-CE, so the targeted DLR attack runs
    light = [(n, {**p, "n_queries": 50} if n == "square" else {**p, "steps": 10} if "steps" in p else p)
             for n, p in PRESETS[preset]]
    res = evaluate(model, x, y, threat, attacks=light)
    pgd = evaluate(model, x, y, threat, attacks=[("pgd", {"steps": 20})])
    assert res.clean_accuracy == 1.0
    assert all(a["status"].startswith("ran") for a in res.attacks)
    assert res.robust_accuracy <= pgd.robust_accuracy + 1 / 12  # at least as strong as PGD, up to one sample


def test_dlr_falls_back_to_the_logit_margin_below_its_class_count():
    z = torch.tensor([[2.0, -1.0], [0.5, 1.5]], requires_grad=True)
    y = torch.tensor([0, 1])
    assert torch.allclose(dlr_loss(z, y), -margin(z, y))
    (g,) = torch.autograd.grad(dlr_loss(z, y).sum(), z)
    assert bool((g.abs() > 0).all())  # a normalised margin of two logits would be constant (zero gradient)
    z3 = torch.tensor([[2.0, -1.0, 0.5]])
    assert torch.allclose(dlr_loss(z3, torch.tensor([0]), torch.tensor([2])), torch.tensor([-1.5]))
    z4 = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
    expected = -(3.0 - 1.0) / (3.0 - 0.5 * (0.0 - 1.0))
    assert torch.allclose(dlr_loss(z4, torch.tensor([0]), torch.tensor([1])), torch.tensor([expected]))


def test_labels_outside_the_models_classes_are_named_not_called_masked_gradients():
    model = create_model("mlp", input_shape=(1, 4, 4), num_classes=4).eval()
    x = torch.rand(5, 1, 4, 4)
    with pytest.raises(ValueError, match=r"'y' parameter of evaluate must hold class indices in \[0, 3\]"):
        evaluate(model, x, torch.tensor([0, 1, 2, 3, 9]), ThreatModel("linf", 0.1), attacks=[("pgd", {"steps": 2})])


def test_attack_in_batches_gives_every_module_its_own_mode_back():
    from robustkit.attacks.batched import attack_in_batches
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Dropout(0.5),
                                torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    model.train()
    model[3].eval()  # mixed: frozen batch-norm statistics inside a training model
    before = [m.training for m in model.modules()]
    x = torch.rand(10, 1, 4, 4)
    attack_in_batches(attacks.create("pgd", ThreatModel("linf", 0.1), steps=2), model, x, torch.zeros(10).long(),
                      batch_size=4)
    assert [m.training for m in model.modules()] == before
