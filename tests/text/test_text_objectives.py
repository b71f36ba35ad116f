"""Embedding-space objectives: radius and padding invariants, FreeLB's accumulated gradient, determinism."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustkit.threat import ThreatModel
from robustkit.modality import embedding as perturb
from robustkit.training.objectives import create_objective

from conftest import synthetic_sentences


def _batch(model, n=8):
    texts, labels = synthetic_sentences(n, seed=5)
    texts[0] = "good"  # a short one, so the batch has padding
    return model.encode(texts), torch.tensor(labels), texts


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_embedding_pgd_stays_in_the_relative_ball_and_off_padding(tiny_model, norm):
    x, y, _ = _batch(tiny_model)
    threat = ThreatModel(norm, 0.2, None)
    tiny_model.eval()
    delta = perturb.embedding_pgd(tiny_model, x, threat, perturb.ce_loss(y), steps=3, step_size=0.1,
                                  generator=torch.Generator().manual_seed(0))
    mask = x["attention_mask"]
    assert float(delta[mask == 0].abs().max()) == 0.0
    r = perturb.radius(threat, mask, perturb.embedding_scale(tiny_model, norm), 0.2)
    assert bool((threat.norm_of(delta) <= r * (1 + 1e-5)).all())
    assert all(p.grad is None for p in tiny_model.parameters())  # gradients w.r.t. delta only
    with torch.no_grad():
        clean = F.cross_entropy(tiny_model(x), y)
        adv = F.cross_entropy(tiny_model(x, delta=delta), y)
    assert adv > clean


@pytest.mark.parametrize("name", ["embed-pgd", "freelb", "smart"])
def test_objectives_give_finite_losses_and_parameter_gradients(tiny_model, name):
    x, y, _ = _batch(tiny_model)
    tiny_model.train()
    obj = create_objective(name, ThreatModel("l2", 0.1, None), seed=0)
    loss, stats = obj(tiny_model, x, y)
    assert torch.isfinite(loss) and loss.requires_grad and "adv_acc" in stats
    loss.backward()
    assert tiny_model.classifier.weight.grad is not None
    assert float(tiny_model.embedding_layer().weight.grad.abs().sum()) > 0


def test_objectives_are_seeded(tiny_model):
    x, y, _ = _batch(tiny_model)
    tiny_model.train()
    tiny_model.dropout.p = 0.0
    a = create_objective("embed-pgd", ThreatModel("l2", 0.3, None), seed=4)(tiny_model, x, y)[0].detach()
    b = create_objective("embed-pgd", ThreatModel("l2", 0.3, None), seed=4)(tiny_model, x, y)[0].detach()
    c = create_objective("embed-pgd", ThreatModel("l2", 0.3, None), seed=5)(tiny_model, x, y)[0].detach()
    assert float(a) == float(b) and float(a) != float(c)


def test_freelb_gradient_is_the_mean_over_its_ascent_steps(tiny_model):
    """The returned loss's gradient equals (1/K) Σ_k ∇θ L(θ, δ_k), with δ_k reproduced by hand."""
    x, y, _ = _batch(tiny_model)
    tiny_model.train()
    tiny_model.dropout.p = 0.0  # no dropout anywhere, so the passes are deterministic
    threat = ThreatModel("l2", 0.2, None)
    obj = create_objective("freelb", threat, steps=3, step_size=0.1, seed=7)
    loss, _ = obj(tiny_model, x, y)
    w = tiny_model.classifier.weight
    (g_obj,) = torch.autograd.grad(loss, w)

    mask = x["attention_mask"]
    mask3 = mask.unsqueeze(-1).float()
    scale = perturb.embedding_scale(tiny_model, "l2")
    r_eps, r_step = perturb.radius(threat, mask, scale, 0.2), perturb.radius(threat, mask, scale, 0.1)
    gen = torch.Generator().manual_seed(7 * 1_000_003 + 1)
    shape = (*x["input_ids"].shape, w.shape[1])
    delta = perturb.random_delta(threat, torch.Size(shape), mask3, r_eps, gen, torch.float32, torch.device("cpu"))
    grads = []
    for k in range(3):
        delta.requires_grad_(True)
        lk = F.cross_entropy(tiny_model(x, delta=delta), y)
        gw, gd = torch.autograd.grad(lk, [w, delta])
        grads.append(gw)
        delta = perturb.ascend(threat, delta.detach(), gd, mask3, r_step, r_eps)
        assert bool((threat.norm_of(delta) <= r_eps * (1 + 1e-5)).all())
    assert torch.allclose(g_obj, torch.stack(grads).mean(0), atol=1e-6)


def test_augment_needs_texts_and_trains_on_adversarial_words(trained_tiny):
    x, y, texts = _batch(trained_tiny)
    obj = create_objective("augment", None, share=0.5, seed=0, attack_args={"candidates": "embedding",
                                                                             "min_embedding_cos": 0.0})
    with pytest.raises(ValueError, match="raw texts"):
        obj(trained_tiny, x, y)
    x["texts"] = texts
    trained_tiny.train()
    try:
        loss, stats = obj(trained_tiny, x, y)
    finally:
        trained_tiny.eval()
    assert torch.isfinite(loss) and 0.0 <= stats["attack_success"] <= 1.0 and "adv_acc" in stats
    with pytest.raises(ValueError, match="'share' parameter of augment"):
        create_objective("augment", None, share=1.5)
