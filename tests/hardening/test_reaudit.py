"""Acceptance 3: a naive gradient attack calls a quantized model robust; robustkit's audit does not."""
from __future__ import annotations

import copy

import torch

from robustkit import attacks
from robustkit.evaluation import run_audit
from robustkit.hardening import quantize_static
from robustkit.hardening.family import float_model, hardened_spec
from robustkit.threat import ThreatModel


class NaiveGradients(torch.nn.Module):
    """What a tool that ignores missing gradients sees: a quantized model whose input gradient is zero."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) + 0.0 * x.sum()  # differentiable in name only: d(logits)/dx == 0


def _quantized(digits, digits_model):
    q = quantize_static(copy.deepcopy(digits_model), digits.x_train[:256])
    spec = hardened_spec(digits_model.robustkit_spec, quantization={"flow": "int8-static", "backend": "x86"})
    q.robustkit_spec = spec
    q.set_twin_builder(lambda: float_model(spec))
    return q


def test_naive_gradient_attack_vs_audit(digits, digits_model):
    x, y = digits.x_test[:120], digits.y_test[:120]
    threat = ThreatModel("linf", 0.2, (0.0, 1.0))
    q = _quantized(digits, digits_model)
    with torch.no_grad():
        clean = float((q(x).argmax(1) == y).float().mean())
    # (1) the naive attack: PGD on the quantized model sees zero gradients and moves nowhere
    x_adv = attacks.create("pgd", threat, steps=20, seed=0)(NaiveGradients(q), x, y)
    with torch.no_grad():
        naive = float((q(x_adv).argmax(1) == y).float().mean())
    assert naive >= clean - 0.03  # "robust": the naive attack reports (nearly) the clean accuracy
    # (2) the float model under the same PGD: the real robustness
    float_doc = run_audit(digits_model, x, y, threat, attacks=[("pgd", {"steps": 20})], sanity=False, gallery=0)
    float_robust = float_doc["evaluation"]["robust_accuracy"]["value"]
    # (3) robustkit's audit of the quantized model: transfer from the float twin + Square, never plain PGD
    doc = run_audit(q, x, y, threat, attacks=[("pgd", {"steps": 20}), ("square", {"n_queries": 300})], sanity=False,
                    gallery=0)
    ev = doc["evaluation"]
    names = [a["name"] for a in ev["attacks"]]
    assert names == ["transfer", "square"] and doc["transferred_from_twin"] == ["pgd"]
    assert doc["differentiable"] is False
    assert any("not differentiable" in n for n in ev["notes"])
    robust = ev["robust_accuracy"]["value"]
    assert abs(robust - float_robust) <= 0.05, (robust, float_robust)
    assert clean - robust >= 0.2, (clean, robust)  # far from the clean accuracy the naive attack reported
    assert naive - robust >= 0.2


def test_onnx_model_is_audited_by_transfer(digits, digits_model, tmp_path):
    import pytest
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'robustkit[export]')")
    from robustkit.hardening.export import export_onnx
    from robustkit.models.onnx import OnnxModel
    x, y = digits.x_test[:60], digits.y_test[:60]
    export_onnx(digits_model, {"input": x[:2]}, tmp_path / "m.onnx")
    onnx_model = OnnxModel(tmp_path / "m.onnx")
    onnx_model.robustkit_float_twin = digits_model  # the PyTorch model it was exported from
    doc = run_audit(onnx_model, x, y, ThreatModel("linf", 0.1, (0.0, 1.0)),
                    attacks=[("pgd", {"steps": 10}), ("square", {"n_queries": 200})],
                    sanity=False, gallery=0)
    names = [a["name"] for a in doc["evaluation"]["attacks"]]
    assert names[0] == "transfer" and "square" in names and "pgd" not in names
