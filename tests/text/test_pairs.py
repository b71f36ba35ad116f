"""Two-sentence inputs (``text ||| text_pair``) through tokenization, batching and the model, and the word
alignment hook ``TextClassifier.encode_words`` that gradient word saliency and embedding defences use."""
from __future__ import annotations

import json

import pytest
import torch

from _text_fixtures import EXTRA_VOCAB, make_encoder, make_tokenizer
from robustkit.data.text import (PAIR_MARK, PAIR_SEPARATOR, TextDataError, encode_texts, join_pair, load_text_dataset,
                                 split_pair, text_batches, tokenize_texts)
from robustkit.models.text import text_model_from_encoder


@pytest.fixture()
def model(tmp_path):
    """A tiny BERT whose vocabulary also has word pieces ("superbly" is "superb" "##ly")."""
    tok = make_tokenizer(tmp_path / "tok", extra=EXTRA_VOCAB)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return text_model_from_encoder(make_encoder(tok), tok, 3, name="tiny-bert", max_length=32).eval()


def test_the_separator_is_one_constant_joining_two_sentences():
    assert PAIR_SEPARATOR == " ||| " and PAIR_MARK == "|||"
    assert join_pair("a man sleeps", "a person sleeps") == "a man sleeps ||| a person sleeps"
    assert split_pair("a man sleeps ||| a person sleeps") == ("a man sleeps", "a person sleeps")
    assert split_pair("just one sentence") == ("just one sentence", None)
    with pytest.raises(ValueError, match=r"holds the pair separator '\|\|\|' 2 times.*exactly once"):
        split_pair("a ||| b ||| c", where="texts[3]")
    with pytest.raises(ValueError, match="second sentence is empty"):
        split_pair("a man sleeps |||")


def test_a_pair_is_tokenized_as_a_pair_with_segment_ids(model):
    tok = model.tokenizer
    batch = model.encode(["a man is sleeping ||| a person is sleeping", "the movie was good"])
    ref = tok("a man is sleeping", "a person is sleeping")
    n = len(ref["input_ids"])
    assert batch["input_ids"][0, :n].tolist() == ref["input_ids"]
    assert batch["token_type_ids"][0, :n].tolist() == ref["token_type_ids"]
    assert 1 in batch["token_type_ids"][0].tolist()  # the second sentence is segment 1
    assert batch["token_type_ids"][1].tolist() == [0] * batch["input_ids"].shape[1]  # a single text and padding
    # exactly one [SEP] between the sentences and one closing it; the "|||" itself never reaches the model
    assert batch["input_ids"][0].tolist().count(tok.sep_token_id) == 2
    assert tok.unk_token_id not in batch["input_ids"][0, :n].tolist()


def test_forward_and_forward_embeds_use_the_segment_ids(model):
    batch = model.encode(["a man is sleeping ||| a person is sleeping"])
    with torch.no_grad():
        with_types = model(batch)
        without = model({k: v for k, v in batch.items() if k != "token_type_ids"})
        via_embeds = model.forward_embeds(model.embed(batch["input_ids"]), batch["attention_mask"],
                                          batch["token_type_ids"])
        delta = model(batch, delta=torch.zeros(*batch["input_ids"].shape, 32))
    assert torch.allclose(with_types, via_embeds) and torch.allclose(with_types, delta)
    assert not torch.allclose(with_types, without)  # segment embeddings of the second sentence changed the logits


def test_text_batches_carry_segment_ids_through_padding_and_shuffling(model):
    texts = ["a man is sleeping ||| a person is sleeping", "the movie was good", "a dog is running ||| nobody is"]
    batches = text_batches(texts, torch.tensor([0, 1, 2]), model.tokenizer, batch_size=2, max_length=32, seed=0)
    seen = 0
    for inputs, y in batches(0):
        assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
        assert inputs["token_type_ids"].shape == inputs["input_ids"].shape
        for row, label in zip(inputs["token_type_ids"], y.tolist()):
            assert (1 in row.tolist()) == (label != 1)
            seen += 1
    assert seen == 3
    off = text_batches(texts, torch.tensor([0, 1, 2]), model.tokenizer, batch_size=2, max_length=32, seed=0,
                       token_types=False)
    assert all("token_type_ids" not in inputs for inputs, _ in off(0))


def test_a_too_long_pair_loses_tokens_of_its_longer_sentence(model, caplog):
    long = " ".join(["good"] * 40)
    enc = tokenize_texts(model.tokenizer, [f"{long} ||| a person is sleeping"], 16)
    ids, types = enc.input_ids[0], enc.token_type_ids[0]
    assert len(ids) == 16 and enc.truncated == 1
    assert types.count(1) == len(model.tokenizer("a person is sleeping")["input_ids"]) - 1  # hypothesis + [SEP] kept
    ids_only, cut = encode_texts(model.tokenizer, [f"{long} ||| a person is sleeping", "the movie"], 16, warn=False)
    assert ids_only[0] == ids and cut == 1


def test_a_text_with_the_separator_twice_is_refused_by_every_tokenizing_path(model):
    bad = ["the movie ||| was good ||| and long"]
    for call in (lambda: model.encode(bad), lambda: encode_texts(model.tokenizer, bad, 16),
                 lambda: model.encode_words([bad[0].split()])):
        with pytest.raises(ValueError, match=r"'\|\|\|' 2 times"):
            call()


def test_encode_words_points_each_token_at_its_word_in_a_single_sentence(model):
    words = ["the", "film", "was", "superbly", "good", "!"]
    batch, word_ids = model.encode_words([words])
    tokens = model.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    assert tokens == ["[CLS]", "the", "film", "was", "superb", "##ly", "good", "!", "[SEP]"]
    assert word_ids == [[None, 0, 1, 2, 3, 3, 4, 5, None]]
    # the same inputs as encode() of the joined text: saliency is computed on what the model really sees
    plain = model.encode([" ".join(words)])
    assert all(torch.equal(plain[k], batch[k]) for k in plain)


def test_encode_words_maps_a_pairs_words_across_the_separator(model):
    pair = "a man is superbly sleeping ||| nobody is sleeping".split()
    single = ["the", "movie"]
    batch, word_ids = model.encode_words([pair, single])
    tokens = model.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    for t, (tok, w) in enumerate(zip(tokens, word_ids[0])):
        if tok in ("[CLS]", "[SEP]"):
            assert w is None
        else:  # every word piece points at the word it spells, on either side of the separator
            assert pair[w].startswith(tok.lstrip("#")) or tok.startswith("##") and tok[2:] in pair[w], (tok, w)
    assert word_ids[0].count(pair.index(PAIR_MARK)) == 0  # the separator word maps to no token
    assert [word_ids[0][i] for i, t in enumerate(tokens) if t == "nobody"] == [6]
    assert batch["token_type_ids"][0].tolist() == [0] * 8 + [1] * 4  # [CLS] a man is superb ##ly sleeping [SEP]
    assert word_ids[1] == [None, 0, 1, None] + [None] * (batch["input_ids"].shape[1] - 4)  # padding: None
    plain = model.encode([" ".join(pair), " ".join(single)])
    assert all(torch.equal(plain[k], batch[k]) for k in plain)


def test_encode_words_truncates_like_encode(model):
    words = ["good"] * 50
    batch, word_ids = model.encode_words([words])
    assert batch["input_ids"].shape[1] == model.max_length
    assert word_ids[0] == [None] + list(range(model.max_length - 2)) + [None]


def test_encode_words_validates_its_input(model):
    with pytest.raises(TypeError, match="list of word lists"):
        model.encode_words("the movie")
    with pytest.raises(ValueError, match="non-empty word lists. Got \\[\\] at index 1"):
        model.encode_words([["ok"], []])
    with pytest.raises(ValueError, match="must be a word of its own"):
        model.encode_words([["the", "movie|||was", "good"]])


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_loaders_join_the_pair_column(tmp_path, fmt):
    rows = [("a man is sleeping", "a person is sleeping", "entailment"), ("a dog runs", "nobody runs", "contradiction")]
    if fmt == "jsonl":
        body = "".join(json.dumps({"premise": p, "hypothesis": h, "label": y}) + "\n" for p, h, y in rows)
    else:
        sep = "," if fmt == "csv" else "\t"
        body = sep.join(["premise", "hypothesis", "label"]) + "\n" + "".join(sep.join(r) + "\n" for r in rows)
    _write(tmp_path / f"data.{fmt}", body)
    ds = load_text_dataset(fmt, data_dir=tmp_path / f"data.{fmt}", text_column="premise",
                           text_pair_column="hypothesis")
    assert ds.train_texts == ["a man is sleeping ||| a person is sleeping", "a dog runs ||| nobody runs"]
    assert ds.class_names == ["contradiction", "entailment"] and ds.train_labels.tolist() == [1, 0]
    assert ds.spec()["text_pair_column"] == "hypothesis"


def test_the_pair_column_travels_in_model_args(tmp_path):
    from robustkit.modality.text import DATA_KEYS, TextModality
    assert "text_pair_column" in DATA_KEYS
    model_kw, data_kw = TextModality().data_options({"text_pair_column": "hypothesis", "max_length": 32})
    assert data_kw == {"text_pair_column": "hypothesis"} and model_kw["max_length"] == 32


def test_a_single_sentence_column_may_not_hold_the_separator(tmp_path):
    _write(tmp_path / "d.csv", "text,label\nfine text,0\nodd ||| text,1\n")
    with pytest.raises(TextDataError, match=r"d.csv:3.*contains '\|\|\|'.*reserves"):
        load_text_dataset("csv", data_dir=tmp_path / "d.csv")


def test_the_labels_option_sets_the_id_order_also_as_one_string(tmp_path):
    """--data-option labels=a,b,c arrives as one string; a list (YAML, Python) works the same."""
    _write(tmp_path / "d.csv", "text,label\nfine text,yes\nother text,no\n")
    for labels in ("yes,no", ["yes", "no"]):
        ds = load_text_dataset("csv", data_dir=tmp_path / "d.csv", labels=labels)
        assert ds.class_names == ["yes", "no"] and ds.train_labels.tolist() == [0, 1]
    with pytest.raises(TextDataError, match=r"must list each label once. Got \['yes', 'yes'\]"):
        load_text_dataset("csv", data_dir=tmp_path / "d.csv", labels="yes,yes")
