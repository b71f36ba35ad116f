"""Tiny BERT test helpers shared by tests/text and tests/training: random weights from a BertConfig and
a word-level vocab written to a folder, no download. Import as ``from _text_fixtures import ...``;
transformers is imported inside the functions, so importing this module needs nothing optional."""
from __future__ import annotations

import inspect
import os

import torch

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


def make_tiny_model(folder, seed=0, **kw):
    """A tiny BERT classifier (2 classes) with a seeded head; ``kw`` go to ``text_model_from_encoder``."""
    from robustkit.models.text import text_model_from_encoder
    tok = make_tokenizer(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the head's initialization
        return text_model_from_encoder(make_encoder(tok, seed=seed), tok, 2, name="tiny-bert",
                                       **{"max_length": 32, **kw})


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


class KeywordModel(torch.nn.Module):
    """Says "negative" exactly when a text contains the word "bad" (a deterministic text classifier)."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(3.0))

    def encode(self, texts, device=None):
        return {"bad": torch.tensor([float("bad" in t.split()) for t in texts])}

    def forward(self, inputs):
        b = inputs["bad"]
        return self.scale * torch.stack([b, 1 - b], 1)

    @torch.no_grad()
    def predict_proba(self, texts, batch_size=64):
        return self(self.encode(texts)).softmax(1)
