"""Tiny BERT fixtures: random weights from a BertConfig and a word-level vocab written to tmp, no download."""
from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

POSITIVE = ["good", "great", "fine", "excellent", "wonderful", "nice", "superb", "brilliant"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "dreadful", "boring", "dull", "tedious"]
FILLER = ["movie", "film", "plot", "acting", "story", "picture", "cast", "script", "director", "music"]
STOP = ["the", "a", "is", "was", "and", "not", "this", "very", "of", "it"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "!"] + POSITIVE + NEGATIVE + FILLER + STOP + \
        ["amusing", "dire", "slow", "well", "right", "full", "picture", "flick", "pic"]


def make_tokenizer(folder):
    from transformers import BertTokenizerFast
    folder.mkdir(parents=True, exist_ok=True)
    seen = []
    for w in VOCAB:
        if w not in seen:
            seen.append(w)
    (folder / "vocab.txt").write_text("\n".join(seen) + "\n")
    import inspect
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        return BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)


def make_encoder(tok, seed=0, hidden=32, layers=2):
    from transformers import BertConfig, BertModel
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertModel(cfg, add_pooling_layer=False)


def synthetic_sentences(n, seed=0):
    """Sentences whose label is the polarity of their one sentiment word."""
    g = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for _ in range(n):
        y = int(torch.randint(2, (1,), generator=g))
        pool = POSITIVE if y else NEGATIVE
        pick = lambda seq: seq[int(torch.randint(len(seq), (1,), generator=g))]  # noqa: E731
        words = ["the", pick(FILLER), "was", pick(pool), "and", "the", pick(FILLER), "was", "very", pick(pool)]
        texts.append(" ".join(words))
        labels.append(y)
    return texts, labels


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
    from robustkit.text.models import text_model_from_encoder
    tok = make_tokenizer(tmp_path / "tok")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the head's initialization
        return text_model_from_encoder(make_encoder(tok), tok, 2, name="tiny-bert", max_length=32)


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
    from robustkit.text.data import pad_batch, encode_texts
    from robustkit.text.models import text_model_from_encoder
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
