"""Text datasets: SST-2 files, generic CSV/TSV, bad input, truncation, dynamic padding."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from robustkit.data.text import (TextDataError, encode_texts, is_text_dataset, load_text_dataset, pad_batch,
                                 text_batches)


def _sst2_root():
    env = os.environ.get("ROBUSTKIT_DATA")
    root = Path(env) / "sst2" if env else Path(__file__).resolve().parents[3] / "shared" / "data" / "sst2"
    return root if (root / "stsa.binary.train").is_file() else None


@pytest.mark.skipif(_sst2_root() is None, reason="SST-2 data not found ($ROBUSTKIT_DATA/sst2)")
def test_sst2_classic_and_glue_have_the_documented_sizes():
    root = _sst2_root()
    ds = load_text_dataset("sst2", data_dir=root)
    assert (len(ds.train_texts), len(ds.test_texts)) == (6920, 872)
    assert ds.train_labels.bincount().tolist() == [3310, 3610]
    assert ds.test_labels.bincount().tolist() == [428, 444]
    glue = load_text_dataset("sst2", data_dir=root, variant="glue")
    assert len(glue.test_texts) == 872 and glue.test_labels.bincount().tolist() == [428, 444]
    sub = load_text_dataset("sst2", data_dir=root, limit=100, seed=3)
    assert len(sub.train_texts) == 100 and sub.train_texts == load_text_dataset(
        "sst2", data_dir=root, limit=100, seed=3).train_texts


def test_text_dataset_names():
    assert is_text_dataset("sst2") and is_text_dataset("csv") and not is_text_dataset("cifar10")
    with pytest.raises(ValueError, match="Did you mean 'sst2'"):
        load_text_dataset("sst", data_dir=".")


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_csv_dataset_maps_string_labels(tmp_path):
    _write(tmp_path, "train.csv", 'review,sentiment\n"good, really",pos\nbad,neg\nfine,pos\n')
    _write(tmp_path, "dev.csv", "review,sentiment\nawful,neg\n")
    ds = load_text_dataset("csv", data_dir=tmp_path, text_column="review", label_column="sentiment")
    assert ds.class_names == ["neg", "pos"]
    assert ds.train_texts[0] == "good, really" and ds.train_labels.tolist() == [1, 0, 1]
    assert ds.test_labels.tolist() == [0]


def test_tsv_missing_column_names_the_header(tmp_path):
    _write(tmp_path, "train.tsv", "sentence\tlabel\nok\t1\nno\t0\n")
    _write(tmp_path, "dev.tsv", "sentence\tlabel\nok\t1\n")
    with pytest.raises(TextDataError, match="no column 'text'"):
        load_text_dataset("tsv", data_dir=tmp_path)
    ds = load_text_dataset("tsv", data_dir=tmp_path, text_column="sentence")
    assert ds.num_classes == 2


def test_empty_text_is_an_error_or_skipped(tmp_path):
    _write(tmp_path, "train.tsv", "text\tlabel\nok\t1\n   \t0\nno\t0\n")
    _write(tmp_path, "dev.tsv", "text\tlabel\nok\t1\n")
    with pytest.raises(TextDataError, match=r"Empty text at .*train.tsv:3"):
        load_text_dataset("tsv", data_dir=tmp_path)
    ds = load_text_dataset("tsv", data_dir=tmp_path, on_empty="skip")
    assert ds.train_texts == ["ok", "no"]


def test_non_utf8_bytes_name_line_and_offset(tmp_path):
    _write(tmp_path, "train.csv", b"text,label\ncaf\xe9,1\nok,0\n")
    _write(tmp_path, "dev.csv", "text,label\nok,1\n")
    with pytest.raises(TextDataError, match=r"not valid UTF-8: byte 0xe9 at offset 14 \(line 2\)"):
        load_text_dataset("csv", data_dir=tmp_path)


def test_label_outside_the_label_set(tmp_path):
    _write(tmp_path, "train.csv", "text,label\na,0\nb,1\n")
    _write(tmp_path, "dev.csv", "text,label\nc,2\n")
    with pytest.raises(TextDataError, match=r"Label '2' at .*dev.csv:2 is not in the label set \['0', '1'\]"):
        load_text_dataset("csv", data_dir=tmp_path)
    sst = tmp_path / "sst2"
    _write(sst, "stsa.binary.train", "1 fine\n3 odd label\n")
    _write(sst, "stsa.binary.dev", "0 bad\n")
    with pytest.raises(TextDataError, match="Label '3'"):
        load_text_dataset("sst2", data_dir=tmp_path)


def test_missing_data_dir_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBUSTKIT_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_text_dataset("sst2", data_dir=None)
    with pytest.raises(ValueError, match="needs --data-dir"):
        load_text_dataset("csv")


def test_long_texts_are_truncated_with_one_warning(tiny_model, caplog):
    tok = tiny_model.tokenizer
    texts = ["good " * 100, "bad movie"]
    with caplog.at_level(logging.WARNING, logger="robustkit.data.text"):
        ids, cut = encode_texts(tok, texts, 16)
    assert cut == 1 and len(ids[0]) == 16 and ids[0][-1] == tok.sep_token_id and ids[0][0] == tok.cls_token_id
    assert "1 of 2 texts are longer than max_length=16" in caplog.text
    with pytest.raises(TypeError, match="list of strings"):
        encode_texts(tok, "one string", 16)
    with pytest.raises(TypeError, match="index 1"):
        encode_texts(tok, ["ok", None], 16)


def test_dynamic_padding_and_seeded_batches(tiny_model):
    tok = tiny_model.tokenizer
    texts = ["good"] * 5 + ["the movie was very good and the plot was fine"] * 5
    labels = torch.tensor([1] * 10)
    b = pad_batch([[2, 5, 3], [2, 3]], 0)
    assert b["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]] and b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    batches = text_batches(texts, labels, tok, batch_size=5, max_length=32, seed=0, bucket=2)
    widths = sorted(x["input_ids"].shape[1] for x, _ in batches(0))
    assert widths == [3, 12]  # bucketing by length: no batch is padded to another's length
    first = [x["input_ids"].tolist() for x, _ in batches(1)]
    assert first == [x["input_ids"].tolist() for x, _ in batches(1)]
    assert batches.num_batches == 2
    with_texts = next(iter(text_batches(texts, labels, tok, batch_size=4, max_length=32, seed=0, with_texts=True)(0)))
    assert len(with_texts[0]["texts"]) == 4
