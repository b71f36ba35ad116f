"""Acceptance 4: ONNX export of a vision and a text model matches PyTorch's logits (fp32) on a batch."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'robustkit[export]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'robustkit[export]')")

from robustkit.cli import app  # noqa: E402
from robustkit.hardening.export import export_inputs, export_onnx  # noqa: E402
from robustkit.modality import get_modality  # noqa: E402


def test_vision_export_matches(digits_run, tmp_path):
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(app, ["export", str(digits_run), "--format", "onnx", "--out", str(out), "--batch", "16"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.with_suffix(".export.json").read_text())
    assert doc["max_abs_logit_diff"] <= 1e-4 and doc["batch"] == 16


def test_text_export_matches(tmp_path):
    from _text_fixtures import make_tiny_model
    model = make_tiny_model(tmp_path / "tok").eval()
    text = get_modality("text")
    example = export_inputs(model, text, batch=2)
    check = export_inputs(model, text, batch=3, texts=["good", "the film was very bad and the plot was dull", "fine"])
    doc = export_onnx(model, example, tmp_path / "t.onnx", check_inputs=check)
    assert doc["max_abs_logit_diff"] <= 1e-4 and doc["inputs"] == ["input_ids", "attention_mask"]


def test_dynamic_control_flow_is_refused(tmp_path):
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    with pytest.raises(ValueError, match="dynamic control flow"):
        export_onnx(Branchy(), {"input": torch.rand(2, 4)}, tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()


def test_quantized_model_export_is_refused(tmp_path, digits, digits_model):
    import copy

    from robustkit.hardening import quantize_static
    q = quantize_static(copy.deepcopy(digits_model), digits.x_train[:64])
    with pytest.raises(ValueError, match="export its float parent"):
        export_onnx(q, {"input": digits.x_test[:2]}, tmp_path / "q.onnx")


def test_unknown_format(digits_run):
    res = CliRunner().invoke(app, ["export", str(digits_run), "--format", "tflite"])
    assert res.exit_code == 2 and "'format'" in res.output


def test_text_export_carries_the_word_map_the_graph_lacks(tmp_path):
    from _text_fixtures import make_tiny_model
    from robustkit.data.synonyms import rare_word_map_from_spec
    from robustkit.data.wordnet import find_wordnet
    if find_wordnet() is None:
        pytest.skip("needs WordNet (wordnet-base)")
    model = make_tiny_model(tmp_path / "tok").eval()
    text = get_modality("text")
    example = export_inputs(model, text, batch=2)
    assert "word_map" not in export_onnx(model, example, tmp_path / "plain.onnx")
    model.robustkit_spec = {}
    model.set_rare_word_map({"min_count": 1, "counts": {"film": 3, "good": 2}})
    doc = export_onnx(model, example, tmp_path / "rare.onnx")
    assert doc["word_map"]["kind"] == "rare_words" and "before tokenizing" in doc["word_map"]["apply"]
    again = rare_word_map_from_spec(json.loads(json.dumps(doc["word_map"]["spec"])))
    assert again("the movie") == model.word_map("the movie")
