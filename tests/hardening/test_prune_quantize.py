"""Pruning and int8 quantization: sparsity and shapes in the saved weights, exact reloads, clear errors."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from robustkit.checkpoint import load_model, read_tensors, save_model
from robustkit.hardening import magnitude_prune, quantize_static, structured_prune, weight_sparsity
from robustkit.hardening.family import float_model, hardened_spec
from robustkit.hardening.prune import check_sparsity, prunable_layers
from robustkit.hardening.quantize import check_static_quantizable, quantize_dynamic_int8, resolve_mode
from robustkit.models import create_model


def _save_load(tmp_path, model, spec, ds, name="m"):
    path = save_model(tmp_path / f"{name}.safetensors", model, model_spec=spec, data=ds.spec())
    return load_model(path)[0], path


def test_magnitude_prune_reaches_sparsity_and_is_permanent(digits, digits_model, tmp_path):
    m = copy.deepcopy(digits_model)
    info = magnitude_prune(m, 0.6)
    assert info["target_sparsity"] == 0.6
    assert abs(weight_sparsity(m)["sparsity"] - 0.6) < 1e-3
    assert not any("weight_orig" in k or "mask" in k for k in m.state_dict())  # no prune reparametrization left
    loaded, path = _save_load(tmp_path, m, m.robustkit_spec, digits)
    tensors, _ = read_tensors(path)
    zeros = sum(int((tensors[f"{n}.weight"] == 0).sum()) for n, _ in prunable_layers(m))
    total = sum(tensors[f"{n}.weight"].numel() for n, _ in prunable_layers(m))
    assert zeros / total == pytest.approx(0.6, abs=1e-3)  # the zeros are in the file itself


def test_structured_prune_shrinks_layers_and_reloads(digits, digits_model, tmp_path):
    m = copy.deepcopy(digits_model)
    x = digits.x_test[:16]
    info = structured_prune(m, 0.5, x[:1])
    assert info["conv_channels_removed_share"] >= 0.5
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32]
    spec = hardened_spec(digits_model.robustkit_spec, shapes=info["shapes"])
    loaded, _ = _save_load(tmp_path, m, spec, digits)
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    assert float_model(spec)[1][0][0].out_channels == 16


def test_static_int8_roundtrip_is_exact_and_pickle_free(digits, digits_model, tmp_path, accuracy):
    q = quantize_static(copy.deepcopy(digits_model), digits.x_train[:256])
    spec = hardened_spec(digits_model.robustkit_spec, quantization={"flow": "int8-static", "backend": "x86"})
    q.robustkit_spec = spec
    q.set_twin_builder(lambda: float_model(spec))
    x, y = digits.x_test, digits.y_test
    assert abs(accuracy(q, x, y) - accuracy(digits_model, x, y)) <= 0.02
    loaded, path = _save_load(tmp_path, q, spec, digits)
    tensors, meta = read_tensors(path)
    assert all(isinstance(t, torch.Tensor) and not t.is_quantized for t in tensors.values())
    assert any(t.dtype == torch.int8 for t in tensors.values())
    assert meta["model"]["quantization"]["flow"] == "int8-static"
    with torch.no_grad():
        assert torch.equal(loaded(x), q(x))
        twin = loaded.robustkit_float_twin()  # fake-quantized with the int8 model's own qparams
        assert (twin(x) - q(x)).abs().max() < 0.1 and (twin(x).argmax(1) == q(x).argmax(1)).float().mean() > 0.98
    xr = x[:4].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(twin(xr).sum(), xr)  # the twin is differentiable (straight-through)
    assert g.abs().sum() > 0
    assert loaded.robustkit_differentiable is False and getattr(twin, "robustkit_differentiable", True)


def test_int8_file_is_smaller(digits, digits_model, tmp_path):
    q = quantize_static(copy.deepcopy(digits_model), digits.x_train[:128])
    spec = hardened_spec(digits_model.robustkit_spec, quantization={"flow": "int8-static", "backend": "x86"})
    _, qpath = _save_load(tmp_path, q, spec, digits, "q")
    _, fpath = _save_load(tmp_path, digits_model, digits_model.robustkit_spec, digits, "f")
    assert fpath.stat().st_size / qpath.stat().st_size > 3


def test_dynamic_int8_text_model_roundtrip(tmp_path):
    from _text_fixtures import make_tiny_model
    model = make_tiny_model(tmp_path / "tok").eval()
    enc = model.encode(["the movie was good", "the plot was awful and dull"])
    with torch.no_grad():
        want = model(enc)
    spec = hardened_spec(model.robustkit_spec, quantization={"flow": "int8-dynamic", "backend": "x86"})
    q = quantize_dynamic_int8(copy.deepcopy(model))
    q.robustkit_spec = spec
    path = save_model(tmp_path / "q.safetensors", q, model_spec=spec,
                      data={"name": "sst2", "modality": "text", "num_classes": 2})
    loaded, meta = load_model(path)
    with torch.no_grad():
        got = loaded(loaded.encode(["the movie was good", "the plot was awful and dull"]))
        assert torch.allclose(got, q(enc))
    assert (got - want).abs().max() < 0.05  # int8 linear layers, same decisions
    assert loaded.tokenizer is not None and loaded.robustkit_differentiable is False
    assert meta["model"]["family"] == "hardened"


def test_dynamic_int8_answers_do_not_depend_on_the_batch(tmp_path):
    """Per-batch activation ranges would let a sentence's logits change with its neighbours (a long or
    outlying one widens the range for all): the int8 model runs each input alone, without its padding."""
    from _text_fixtures import make_tiny_model
    model = make_tiny_model(tmp_path / "tok").eval()
    q = quantize_dynamic_int8(copy.deepcopy(model))
    texts = ["good", "the plot was awful and dull and far far too long for anyone", "a fine film", "bad"]
    with torch.no_grad():
        alone = torch.cat([q(q.encode([t])) for t in texts])
        together = q(q.encode(texts))
        pairs = q(q.encode(texts[:2]))
        raw = q.body(q.encode(texts))  # the kernels on the padded batch: what the wrapper avoids
    assert torch.equal(together, alone) and torch.equal(pairs, alone[:2])
    assert not torch.equal(raw, alone)  # the test can fail: batched dynamic int8 really differs


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match=r"'prune'.*\[0, 1\).*Got"):
        check_sparsity(bad, "prune", "harden")


def test_model_without_prunable_layers():
    with pytest.raises(ValueError, match="no prunable layers"):
        magnitude_prune(nn.Sequential(nn.Flatten(), nn.ReLU()), 0.5)


def test_unknown_quantization_mode():
    with pytest.raises(ValueError, match=r"'quantize'.*int8-static.*Got 'int4'"):
        resolve_mode("int4", "vision")


def test_unsupported_layer_is_named():
    model = create_model("preact-resnet18", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValueError, match=r"layer '1' \(_PreActNet\)"):
        check_static_quantizable(model)
    with pytest.raises(ValueError, match="int8-dynamic"):
        check_static_quantizable(model)
