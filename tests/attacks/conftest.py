"""Text fixtures for the attack tests: a tiny random BERT classifier (no download, built in about a second)."""
from __future__ import annotations

import pytest
import torch

from _text_fixtures import BagEncoder, make_tiny_model, synthetic_sentences


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
