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


def make_tokenizer(folder, extra=()):
    """A word-level WordPiece tokenizer over VOCAB (plus ``extra`` words/pieces such as "##ly", appended so the
    default vocabulary and its ids stay as they are)."""
    from transformers import BertTokenizerFast
    folder.mkdir(parents=True, exist_ok=True)
    seen = []
    for w in list(VOCAB) + list(extra):
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


def write_synthetic_csv(folder, splits=(("train", 64, 0), ("dev", 24, 1))):
    """``<split>.csv`` files (text,label with labels pos/neg) of :func:`synthetic_sentences` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in splits:
        texts, labels = synthetic_sentences(n, seed=seed)
        rows = ["text,label"] + [f"{t},{'pos' if y else 'neg'}" for t, y in zip(texts, labels)]
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return folder


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


# -- user-style tasks and model folders (two-sentence NLI, 4 classes) -----------------------------------------------
TOPICS = {"sports": ["football", "tennis", "match", "goal"], "food": ["pizza", "bread", "soup", "cheese"],
          "music": ["song", "guitar", "piano", "melody"], "weather": ["rain", "snow", "storm", "sunshine"]}
SUBJECTS = {"man": "person", "woman": "person", "dog": "animal", "cat": "animal"}
ACTIONS = ["sleeping", "running", "sitting", "eating"]
PLACES = ["outside", "inside", "home", "park"]
NLI_LABELS = ["entailment", "neutral", "contradiction"]  # the id order of an MNLI-style head
EXTRA_VOCAB = [w for ws in TOPICS.values() for w in ws] + list(SUBJECTS) + ["person", "animal"] + ACTIONS + PLACES + \
    ["nobody", "someone", "at", "in", "today", "super", "##b", "##ly"]


def nli_rows(n, seed=0):
    """(premise, hypothesis, label) triples of a synthetic 3-class NLI task: entailment generalises the
    subject, contradiction says nobody does it, neutral adds a place the premise does not mention."""
    g = torch.Generator().manual_seed(seed)
    pick = lambda seq: seq[int(torch.randint(len(seq), (1,), generator=g))]  # noqa: E731
    rows = []
    for _ in range(n):
        subj, act = pick(list(SUBJECTS)), pick(ACTIONS)
        label = pick(NLI_LABELS)
        premise = f"a {subj} is {act} {pick(PLACES)} today"
        hyp = {"entailment": f"a {SUBJECTS[subj]} is {act}", "contradiction": f"nobody is {act}",
               "neutral": f"a {subj} is {act} at the {pick(PLACES)}"}[label]
        rows.append((premise, hyp, label))
    return rows


def topic_rows(n, seed=0):
    """(text, label) pairs of a synthetic 4-class topic task: two topic words and some filler."""
    g = torch.Generator().manual_seed(seed)
    pick = lambda seq: seq[int(torch.randint(len(seq), (1,), generator=g))]  # noqa: E731
    rows = []
    for _ in range(n):
        label = pick(list(TOPICS))
        words = ["the", pick(TOPICS[label]), "was", pick(POSITIVE + NEGATIVE), "and", "the", pick(TOPICS[label]),
                 "was", "very", pick(POSITIVE + NEGATIVE)]
        rows.append((" ".join(words), label))
    return rows


def write_nli_jsonl(folder, n_train=48, n_dev=12, seed=0):
    """train.jsonl and dev.jsonl with premise / hypothesis / label fields."""
    import json
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("dev", n_dev, seed + 1)):
        (folder / f"{split}.jsonl").write_text("".join(
            json.dumps({"premise": p, "hypothesis": h, "label": y}) + "\n" for p, h, y in nli_rows(n, s)))
    return folder


def write_topics_csv(folder, n_train=48, n_dev=12, seed=0):
    """train.csv and dev.csv with text,label columns (4 classes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("dev", n_dev, seed + 1)):
        (folder / f"{split}.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in topic_rows(n, s)))
    return folder


def tiny_bert_config(tok, **kw):
    from transformers import BertConfig
    return BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, **kw)


def save_classifier_folder(folder, num_labels=3, labels=None, seed=0, tokenizer=True):
    """A user's AutoModelForSequenceClassification folder (tiny BERT, random weights): config with num_labels
    (and id2label names when ``labels`` is given), safetensors weights, and a fast tokenizer unless told not."""
    from transformers import BertForSequenceClassification
    tok = make_tokenizer(folder / "_tok", extra=EXTRA_VOCAB)
    kw = {"num_labels": num_labels}
    if labels is not None:
        kw.update(id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertForSequenceClassification(tiny_bert_config(tok, **kw)).save_pretrained(str(folder))
    if tokenizer:
        tok.save_pretrained(str(folder))
    import shutil
    shutil.rmtree(folder / "_tok")
    return folder


def save_encoder_folder(folder, seed=0, tokenizer=True):
    """An encoder-only folder (AutoModel weights, no classification head) with its tokenizer."""
    from transformers import BertModel
    tok = make_tokenizer(folder / "_tok", extra=EXTRA_VOCAB)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertModel(tiny_bert_config(tok), add_pooling_layer=False).save_pretrained(str(folder))
    if tokenizer:
        tok.save_pretrained(str(folder))
    import shutil
    shutil.rmtree(folder / "_tok")
    return folder
