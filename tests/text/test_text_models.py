"""TextClassifier: embedding hooks, checkpoints, local folders, LoRA and frozen layers."""
from __future__ import annotations

import pytest
import torch

from robustkit.checkpoint import load_model, save_model
from robustkit.models.text import ModelFolderError, build_text_model, load_tokenizer


def test_forward_equals_forward_from_embeddings(tiny_model):
    tiny_model.eval()
    x = tiny_model.encode(["the movie was good", "bad"])
    logits = tiny_model(x)
    again = tiny_model.forward_embeds(tiny_model.embed(x["input_ids"]), x["attention_mask"])
    assert torch.allclose(logits, again, atol=1e-6)
    zero = torch.zeros(*x["input_ids"].shape, tiny_model.embedding_layer().weight.shape[1])
    assert torch.allclose(tiny_model(x, delta=zero), logits, atol=1e-6)
    noise = torch.randn(zero.shape, generator=torch.Generator().manual_seed(0))  # (a constant would cancel in LayerNorm)
    assert not torch.allclose(tiny_model(x, delta=noise), logits, atol=1e-3)
    with pytest.raises(TypeError, match="dict with 'input_ids'"):
        tiny_model(x["input_ids"])


def test_padding_does_not_change_predictions(tiny_model):
    tiny_model.eval()
    alone = tiny_model(tiny_model.encode(["good"]))
    padded = tiny_model(tiny_model.encode(["good", "the movie was very good and the plot was fine"]))[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_local_folder_checkpoint_round_trip(model_folder, tmp_path):
    model = build_text_model(str(model_folder), 3, max_length=24, freeze_layers=1)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any("embeddings" in n for n in frozen) and any("layer.0." in n for n in frozen)
    assert not any("layer.1." in n for n in frozen) and model.classifier.weight.requires_grad
    path = save_model(tmp_path / "m.safetensors", model, data={"name": "csv"})
    restored, meta = load_model(path)
    assert meta["model"]["family"] == "text" and meta["model"]["num_classes"] == 3
    x = model.encode(["good movie", "bad plot"])
    model.eval()
    assert torch.allclose(restored(x), model(x), atol=1e-6)
    # the tokenizer travels inside the checkpoint: same ids without the original folder
    assert restored.tokenizer("good movie")["input_ids"] == model.tokenizer("good movie")["input_ids"]


def test_folder_without_tokenizer_is_a_clear_error(model_folder, tmp_path):
    bare = tmp_path / "weights-only"
    bare.mkdir()
    for f in model_folder.iterdir():
        if f.name in ("config.json", "model.safetensors"):
            (bare / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ModelFolderError, match="has no tokenizer"):
        build_text_model(str(bare), 2)
    with pytest.raises(ValueError, match="Unknown text model"):
        build_text_model("no-such-model", 2)
    with pytest.raises(ValueError, match="'num_classes' parameter of build_text_model"):
        build_text_model(str(model_folder), 1)


def test_lora_trains_only_adapters_and_head(model_folder, tmp_path):
    pytest.importorskip("peft")
    model = build_text_model(str(model_folder), 2, lora={"r": 4, "alpha": 8})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("classifier") for n in trainable)
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad) < 0.2 * total
    x = model.encode(["good movie"])
    loss = model(x).sum()
    loss.backward()
    path = save_model(tmp_path / "lora.safetensors", model)
    restored, _ = load_model(path)
    model.eval()
    assert torch.allclose(restored(x), model(x), atol=1e-6)
