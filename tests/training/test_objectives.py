"""Every registered objective trains through the one Trainer on every modality it declares; AWP's weight
perturbation; a plug-in objective needs no change to robustkit; registry errors."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustkit import ThreatModel
from robustkit.config import TrainConfig
from robustkit.data import load_dataset
from robustkit.models import model_for_dataset
from robustkit.training import CatastrophicOverfittingGuard, Trainer, tensor_batches
from robustkit.training.objectives import (Objective, available_objectives, create_objective, get_objective_class,
                                           register_objective)
from robustkit.training.objectives import base as objectives_base

# Cheap settings for known objectives; an objective added later trains with its defaults.
FAST_ARGS = {
    "pgd": {"steps": 2}, "trades": {"steps": 2}, "mart": {"steps": 2},
    "mixed": {"attack": "pgd", "attack_params": {"steps": 2}},
    "awp": {"inner_args": {"steps": 2}},
    "embed-pgd": {"steps": 1}, "freelb": {"steps": 2},
    "augment": {"attack_args": {"candidates": "embedding", "min_embedding_cos": 0.0}},
}
CASES = [(name, modality) for name in available_objectives() for modality in get_objective_class(name).modalities]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits_small():
    return load_dataset("digits", limit=48)


def _cfg(tmp_path, **kw):
    return TrainConfig(**{"name": "t", "out_dir": str(tmp_path), "epochs": 1, "batch_size": 16, "lr": 0.05,
                          "optimizer": "sgd", "schedule": "constant", **kw})


def _fit(tmp_path, model, objective, batches, **cfg_kw):
    """One epoch through the Trainer; no files (is_main=False), validation is clean accuracy only."""
    def validate(m):
        return {"val_clean_acc": 0.5}
    trainer = Trainer(_cfg(tmp_path, **cfg_kw), model, objective, batches, validate, lambda *a: None, Path(tmp_path),
                      device=torch.device("cpu"), is_main=False)
    return trainer, trainer.fit()


def _vision_setup(name, ds, model_name="mlp"):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_for_dataset(model_name, ds)
    cls = get_objective_class(name)
    threat = ThreatModel("linf", 0.1, ds.bounds) if cls.needs_threat else None
    batches = tensor_batches(ds.x_train, ds.y_train, 16, seed=0)
    return model, create_objective(name, threat, seed=0, **FAST_ARGS.get(name, {})), batches


def _text_setup(name, tmp_path):
    pytest.importorskip("transformers")
    from _text_fixtures import make_tiny_model, synthetic_sentences
    from robustkit.data.text import text_batches
    model = make_tiny_model(tmp_path / "tok", dropout=0.0)
    cls = get_objective_class(name)
    threat = ThreatModel("l2", 0.1, None) if cls.needs_threat else None
    objective = create_objective(name, threat, seed=0, **FAST_ARGS.get(name, {}))
    texts, labels = synthetic_sentences(24, seed=2)
    batches = text_batches(texts, torch.tensor(labels), model.tokenizer, batch_size=8, max_length=32, seed=0,
                           with_texts=objective.needs_raw_inputs)
    return model, objective, batches


@pytest.mark.parametrize("name, modality", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_every_objective_trains_on_every_declared_modality(tmp_path, digits_small, name, modality):
    if modality == "vision":
        model, objective, batches = _vision_setup(name, digits_small)
    elif modality == "text":
        model, objective, batches = _text_setup(name, tmp_path)
    else:
        pytest.fail(f"no test inputs for modality {modality!r} (objective {name!r}): add them here")
    before = [p.detach().clone() for p in model.parameters()]
    _, result = _fit(tmp_path, model, objective, batches)
    row = result.history[0]
    assert math.isfinite(row["train_loss"])
    params = list(model.parameters())
    assert all(bool(torch.isfinite(p).all()) for p in params)
    assert any(not torch.equal(b, p) for b, p in zip(before, params) if p.requires_grad)


# -- AWP -------------------------------------------------------------------------------------------------
def _bn_net(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                             nn.Linear(8 * 8 * 8, 10))


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_awp_perturbs_each_layer_by_gamma_and_restores_the_weights(digits_small):
    x, y = digits_small.x_train[:32], digits_small.y_train[:32]
    threat = ThreatModel("linf", 0.1, digits_small.bounds)
    model = _bn_net().train()
    gamma = 0.01
    awp = create_objective("awp", threat, gamma=gamma, inner_args={"steps": 3}, seed=1)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers0 = {n: b.clone() for n, b in model.named_buffers()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)  # an accumulated gradient must survive the ascent pass

    awp.before_step(model, x, y)
    assert all(bool((p.grad == 7.0).all()) for p in model.parameters())
    assert all(torch.equal(b, buffers0[n]) for n, b in model.named_buffers())  # BN statistics untouched
    for n, p in model.named_parameters():
        if p.dim() > 1:  # weights move by gamma of their norm; biases and BN parameters do not move
            assert float((p.detach() - w0[n]).norm() / w0[n].norm()) == pytest.approx(gamma, rel=1e-3), n
        else:
            assert torch.equal(p.detach(), w0[n]), n

    model.zero_grad(set_to_none=True)
    loss, stats = awp(model, x, y)
    loss.backward()
    awp.after_step(model)
    for n, p in model.named_parameters():
        assert torch.allclose(p.detach(), w0[n], atol=1e-6), n
    g_awp = _grads(model)

    # Plain PGD-AT from the same initial state and seed: the same x_adv, but the loss at w instead of w + v.
    ref = _bn_net().train()
    loss_pgd, _ = create_objective("pgd", threat, steps=3, seed=1)(ref, x, y)
    loss_pgd.backward()
    assert not torch.allclose(g_awp, _grads(ref), atol=1e-6)
    assert float(loss.detach()) > float(loss_pgd.detach())  # v is an ascent direction
    assert awp.state()["inner"]["calls"] == 1


def test_awp_without_its_hooks_or_with_gamma_zero_is_the_inner_objective(digits_small):
    x, y = digits_small.x_train[:32], digits_small.y_train[:32]
    threat = ThreatModel("linf", 0.1, digits_small.bounds)
    # A fresh model per call: each train-mode forward moves the BN statistics the next crafting reads.
    ref, _ = create_objective("trades", threat, steps=2, seed=3)(_bn_net().train(), x, y)
    direct, _ = create_objective("awp", threat, inner="trades", inner_args={"steps": 2}, seed=3)(
        _bn_net().train(), x, y)
    assert float(direct.detach()) == float(ref.detach())
    off = create_objective("awp", threat, inner="trades", inner_args={"steps": 2}, gamma=0.0, seed=3)
    model = _bn_net().train()
    off.before_step(model, x, y)
    loss, _ = off(model, x, y)
    off.after_step(model)
    assert float(loss.detach()) == float(ref.detach())


def test_awp_warmup_state_and_validation(digits_small):
    threat = ThreatModel("linf", 0.1, digits_small.bounds)
    x, y = digits_small.x_train[:16], digits_small.y_train[:16]
    model = _bn_net().train()
    awp = create_objective("awp", threat, warmup_batches=1, inner_args={"steps": 1})
    w0 = [p.detach().clone() for p in model.parameters()]
    awp.before_step(model, x, y)  # batch 1: warm-up, no perturbation
    assert all(torch.equal(a, p) for a, p in zip(w0, model.parameters()))
    awp(model, x, y)
    awp.after_step(model)
    state = awp.state()
    assert state["batches"] == 1 and state["inner"]["calls"] == 1
    again = create_objective("awp", threat, warmup_batches=1, inner_args={"steps": 1})
    again.load_state(state)
    assert again.state() == state
    with pytest.raises(ValueError, match=r"The 'gamma' parameter of awp must be a number >= 0\. Got -1"):
        create_objective("awp", threat, gamma=-1)
    with pytest.raises(ValueError, match="'inner' parameter of awp must be one of"):
        create_objective("awp", threat, inner="mart")


def test_awp_trains_under_bf16_autocast(tmp_path, digits_small):
    model, objective, batches = _vision_setup("awp", digits_small, "small-cnn")
    before = [p.detach().clone() for p in model.parameters()]
    _, result = _fit(tmp_path, model, objective, batches, precision="bf16")
    assert math.isfinite(result.history[0]["train_loss"])
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


# -- plug-ins, hooks and the registry --------------------------------------------------------------------
def test_a_plugin_objective_trains_and_its_hooks_run_in_order(tmp_path, digits_small):
    calls = []

    class LabelSmoothing(Objective):
        needs_threat = False
        select_best_by = "clean"

        def before_step(self, model, x, y, *, eps=None):
            calls.append("before")
            self._w = [p.detach().clone() for p in model.parameters()]
            assert all(p.grad is None for p in model.parameters())

        def __call__(self, model, x, y, *, eps=None):
            calls.append("call")
            logits = model(x)
            return F.cross_entropy(logits, y, label_smoothing=0.1), {"clean_acc": 0.0}

        def after_step(self, model):
            calls.append("after")
            # After backward (gradients exist), before the optimizer moved the weights.
            assert all(p.grad is not None for p in model.parameters())
            assert all(torch.equal(a, p) for a, p in zip(self._w, model.parameters()))

    register_objective("test-label-smoothing")(LabelSmoothing)
    try:
        assert "test-label-smoothing" in available_objectives()
        model, objective, batches = _vision_setup("test-label-smoothing", digits_small)
        before = [p.detach().clone() for p in model.parameters()]
        trainer, result = _fit(tmp_path, model, objective, batches)
        assert calls == ["before", "call", "after"] * 3
        assert trainer.callbacks == [] and math.isfinite(result.history[0]["train_loss"])
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
        with pytest.raises(ValueError, match="already registered"):
            register_objective("test-label-smoothing")(LabelSmoothing)
    finally:
        objectives_base._OBJECTIVES.pop("test-label-smoothing", None)


@pytest.mark.parametrize("lookup", [create_objective, get_objective_class])
def test_unknown_objective_is_a_value_error_with_suggestions(lookup):
    with pytest.raises(ValueError, match=r"Unknown training method 'tradess'\. Did you mean 'trades'"):
        lookup("tradess")


def test_default_callbacks_and_best_metric_come_from_the_objective(tmp_path, digits_small):
    threat = ThreatModel("linf", 0.1, digits_small.bounds)
    model = model_for_dataset("mlp", digits_small)

    def trainer(method, **kw):
        return Trainer(_cfg(tmp_path, **kw), model, create_objective(method, threat), lambda e: [], lambda m: {},
                       lambda *a: None, Path(tmp_path), device=torch.device("cpu"), is_main=False)
    assert [type(c) for c in trainer("fast").callbacks] == [CatastrophicOverfittingGuard]
    assert trainer("pgd").callbacks == [] and trainer("fgsm", co_guard="off").callbacks == []
    val = {"val_clean_acc": 0.9, "val_robust_acc": 0.2}
    assert trainer("pgd")._best_key(val) == "val_robust_acc"
    assert trainer("standard")._best_key(val) == "val_clean_acc"
    assert trainer("standard", select_best_by="robust")._best_key(val) == "val_robust_acc"
