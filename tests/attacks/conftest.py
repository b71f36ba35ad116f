"""Text fixtures for the attack tests: a tiny random BERT classifier (no download, built in about a second)."""
from __future__ import annotations

import pytest
import torch

from _text_fixtures import make_tiny_model, synthetic_sentences


class BagEncoder:
    """A deterministic stand-in sentence encoder: normalized bag of words (one dimension per word seen)."""

    def __init__(self):
        self.index = {}

    def __call__(self, texts):
        out = torch.zeros(len(texts), 512)
        for i, t in enumerate(texts):
            for w in t.split():
                out[i, self.index.setdefault(w, len(self.index))] += 1.0
        return torch.nn.functional.normalize(out, dim=-1)


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory):
    pytest.importorskip("transformers")
    return make_tiny_model(tmp_path_factory.mktemp("tiny-text") / "tok", dropout=0.1)


@pytest.fixture()
def text_batch():
    texts, labels = synthetic_sentences(8, seed=5)
    return texts, torch.tensor(labels)


@pytest.fixture()
def bag_encoder():
    return BagEncoder()
