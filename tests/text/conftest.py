"""Tiny BERT fixtures (helpers in tests/_text_fixtures.py): random weights, a word-level vocab in tmp, no download."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
from _text_fixtures import (FILLER, NEGATIVE, POSITIVE, STOP, VOCAB, make_encoder, make_tiny_model,  # noqa: F401
                            make_tokenizer, synthetic_sentences)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread per test process: tiny models on a shared 2-core machine (and pytest-xdist workers)
    run many times faster without OpenMP threads spinning against each other. Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny_model(tmp_path):
    return make_tiny_model(tmp_path / "tok")


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """A tiny BERT trained for a few seconds on the synthetic keyword task (clean accuracy ~1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # session fixtures run before the per-test autouse fixture
    try:
        return _train_tiny(tmp_path_factory)
    finally:
        torch.set_num_threads(before)


def _train_tiny(tmp_path_factory):
    from robustkit.data.text import pad_batch, encode_texts
    from robustkit.models.text import text_model_from_encoder
    folder = tmp_path_factory.mktemp("tiny")
    tok = make_tokenizer(folder / "tok")
    texts, labels = synthetic_sentences(256, seed=1)
    ids, _ = encode_texts(tok, texts, 32)
    batch = pad_batch(ids, tok.pad_token_id)
    y = torch.tensor(labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = text_model_from_encoder(make_encoder(tok, seed=1), tok, 2, name="tiny-bert", max_length=32,
                                        dropout=0.0)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for step in range(40):
            idx = torch.arange(step * 32, step * 32 + 32) % 256
            loss = torch.nn.functional.cross_entropy(model({k: v[idx] for k, v in batch.items()}), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


@pytest.fixture()
def model_folder(tmp_path):
    """A local model folder (config, safetensors weights, tokenizer), as build_text_model loads them."""
    tok = make_tokenizer(tmp_path / "tokbuild")
    enc = make_encoder(tok)
    folder = tmp_path / "tiny-bert"
    enc.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
