"""Bad input on the text path (issue 16, acceptance 5): a model folder without a classification head or without a
tokenizer, data without the named columns, empty or non-UTF-8 lines (CSV, TSV, JSONL, and the pair column), and a
label set that differs from the model's. Every error names the argument/file/line, what was expected and what came."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from _text_fixtures import NLI_LABELS, save_classifier_folder, save_encoder_folder, write_nli_jsonl, write_topics_csv
from robustkit.cli import app
from robustkit.data.text import TextDataError, load_text_dataset
from robustkit.models.text import ModelFolderError, build_text_model

runner = CliRunner()
PAIR = ["--data-option", "text_column=premise", "--data-option", "text_pair_column=hypothesis"]


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # foreign models' reports go to ./runs
    return tmp_path


def cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res


def _write(path, data):
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


# -- model folders ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["attack", "audit", "certify"])
def test_an_encoder_without_a_classification_head_is_refused_for_evaluation(workdir, command):
    enc = save_encoder_folder(workdir / "encoder-only")
    data = write_topics_csv(workdir / "topics", 8, 4)
    r = cli(command, enc, "--data", "csv", "--data-dir", data, "--limit", "2")
    assert r.exit_code == 2, r.output
    assert "holds no classification head" in r.output and "classifier.weight" in r.output
    assert "architectures ['BertModel']" in r.output  # what came
    assert "AutoModelForSequenceClassification" in r.output and "robustkit train --model" in r.output  # what to do


def test_an_encoder_without_a_head_gets_a_new_head_for_training(workdir):
    enc = save_encoder_folder(workdir / "encoder-only")
    model = build_text_model(str(enc), 4, class_names=["a", "b", "c", "d"], max_length=16)
    assert model.head_kind == "mean" and model.classifier.out_features == 4


@pytest.mark.parametrize("command", ["attack", "train"])
def test_a_model_folder_without_a_tokenizer_is_named(workdir, command):
    folder = save_classifier_folder(workdir / "no-tokenizer", 4, tokenizer=False)
    data = write_topics_csv(workdir / "topics", 8, 4)
    if command == "attack":
        r = cli("attack", folder, "--data", "csv", "--data-dir", data, "--limit", "2")
    else:
        r = cli("train", "--data", "csv", "--data-dir", data, "--model", folder, "--epochs", "1",
                "--out-dir", workdir / "runs")
    assert r.exit_code == 2, r.output
    assert "no-tokenizer" in r.output and "has no tokenizer" in r.output
    assert "tokenizer.json" in r.output and "model.safetensors" in r.output  # expected, and what is there
    assert "tokenizer.save_pretrained(folder)" in r.output


# -- columns ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
@pytest.mark.parametrize("option", ["text_column", "text_pair_column", "label_column"])
def test_a_missing_named_column_names_option_file_and_what_is_there(tmp_path, fmt, option):
    if fmt == "jsonl":
        body = json.dumps({"premise": "a man sleeps", "hypothesis": "a person sleeps", "label": "entailment"}) + "\n"
    else:
        sep = "," if fmt == "csv" else "\t"
        body = sep.join(["premise", "hypothesis", "label"]) + "\n" + sep.join(["a man", "a person", "yes"]) + "\n"
    path = _write(tmp_path / f"data.{fmt}", body)
    kw = {"text_column": "premise", "text_pair_column": "hypothesis", "label_column": "label", option: "missing"}
    with pytest.raises(TextDataError) as err:
        load_text_dataset(fmt, data_dir=path, **kw)
    msg = str(err.value)
    assert f"'missing' (the '{option}' option)" in msg and f"data.{fmt}" in msg
    assert "premise" in msg and "hypothesis" in msg  # what the file has
    assert f"Pass {option}=" in msg


def test_a_short_row_names_its_line_and_the_columns_it_needs(tmp_path):
    path = _write(tmp_path / "d.csv", "premise,hypothesis,label\na man,a person,yes\nonly one field\n")
    with pytest.raises(TextDataError, match=r"d.csv:3 has 1 field\(s\); expected at least 3 \(columns 'premise', "
                                            r"'hypothesis', 'label'\)"):
        load_text_dataset("csv", data_dir=path, text_column="premise", text_pair_column="hypothesis")


def test_the_cli_names_a_missing_column(workdir):
    data = write_nli_jsonl(workdir / "nli", 6, 3)
    folder = save_classifier_folder(workdir / "nli-model", 3, NLI_LABELS)
    r = cli("attack", folder, "--data", "jsonl", "--data-dir", data, "--data-option", "text_column=premise",
            "--data-option", "text_pair_column=hyp", "--limit", "2")
    assert r.exit_code == 2 and "no field 'hyp' (the 'text_pair_column' option)" in r.output, r.output
    assert "['hypothesis', 'label', 'premise']" in r.output


# -- empty and non-UTF-8 lines ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_empty_texts_are_errors_naming_the_line_or_skipped(tmp_path, fmt):
    if fmt == "jsonl":
        body = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in (("good", 1), ("  ", 0), ("bad", 0)))
        body = body.replace("\n", "\n\n", 1)  # a blank line is not a row
    else:
        sep = "," if fmt == "csv" else "\t"
        body = f"text{sep}label\ngood{sep}1\n\n   {sep}0\nbad{sep}0\n"
    path = _write(tmp_path / f"d.{fmt}", body)
    line = 3 if fmt == "jsonl" else 4  # counting the blank line (and a header)
    with pytest.raises(TextDataError, match=rf"Empty text at .*d.{fmt}:{line}: expected a non-empty sentence.*"
                                            "on_empty"):
        load_text_dataset(fmt, data_dir=path)
    assert load_text_dataset(fmt, data_dir=path, on_empty="skip").train_texts == ["good", "bad"]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_an_empty_pair_sentence_names_its_column(tmp_path, fmt):
    rows = [("a man sleeps", "a person sleeps", "yes"), ("a dog runs", "", "no"), ("a cat eats", "it eats", "no")]
    if fmt == "jsonl":
        body = "".join(json.dumps({"premise": p, "hypothesis": h, "label": y}) + "\n" for p, h, y in rows)
        line = 2
    else:
        sep = "," if fmt == "csv" else "\t"
        body = sep.join(["premise", "hypothesis", "label"]) + "\n" + "".join(sep.join(r) + "\n" for r in rows)
        line = 3
    path = _write(tmp_path / f"d.{fmt}", body)
    kw = {"text_column": "premise", "text_pair_column": "hypothesis"}
    with pytest.raises(TextDataError, match=rf"Empty text at .*d.{fmt}:{line} \(column 'hypothesis'\)"):
        load_text_dataset(fmt, data_dir=path, **kw)
    ds = load_text_dataset(fmt, data_dir=path, on_empty="skip", **kw)
    assert ds.train_texts == ["a man sleeps ||| a person sleeps", "a cat eats ||| it eats"]


def test_a_file_with_only_empty_texts_says_so(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\n ,1\n  ,0\n")
    with pytest.raises(TextDataError, match=r"d.csv' holds no rows with text.*after skipping empty texts"):
        load_text_dataset("csv", data_dir=path, on_empty="skip")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_non_utf8_bytes_name_file_line_and_byte(tmp_path, fmt):
    if fmt == "jsonl":
        body = b'{"text": "fine", "label": 1}\n{"text": "caf\xe9", "label": 0}\n'
        offset = 29 + len('{"text": "caf')
    else:
        sep = b"," if fmt == "csv" else b"\t"
        body = b"text" + sep + b"label\nfine" + sep + b"1\ncaf\xe9" + sep + b"0\n"
        offset = len(b"text,label\nfine,1\ncaf")
    path = _write(tmp_path / f"d.{fmt}", body)
    with pytest.raises(TextDataError, match=rf"d.{fmt}' is not valid UTF-8: byte 0xe9 at offset {offset} "
                                            r"\(line \d\).*iconv"):
        load_text_dataset(fmt, data_dir=path)


def test_a_non_utf8_pair_column_is_caught_too(tmp_path):
    path = _write(tmp_path / "d.tsv", b"premise\thypothesis\tlabel\na man\ta person\tyes\na dog\tun chien \xff\tno\n")
    with pytest.raises(TextDataError, match=r"not valid UTF-8: byte 0xff .*\(line 3\)"):
        load_text_dataset("tsv", data_dir=path, text_column="premise", text_pair_column="hypothesis")


def test_a_lone_surrogate_escaped_in_json_is_refused(tmp_path):
    path = _write(tmp_path / "d.jsonl", '{"text": "fine", "label": 1}\n{"text": "bad \\ud800 text", "label": 0}\n')
    with pytest.raises(TextDataError, match=r"d.jsonl:2 is not valid Unicode: it holds the unpaired surrogate"):
        load_text_dataset("jsonl", data_dir=path)


# -- label sets ---------------------------------------------------------------------------------------------------
def test_a_label_set_of_another_size_names_both_sets(workdir):
    folder = save_classifier_folder(workdir / "nli-model", 3, NLI_LABELS)
    data = write_topics_csv(workdir / "topics", 8, 4)
    r = cli("attack", folder, "--data", "csv", "--data-dir", data, "--limit", "2")
    assert r.exit_code == 2, r.output
    assert "3-class head" in r.output and "['entailment', 'neutral', 'contradiction']" in r.output
    assert "has 4 classes ['food', 'music', 'sports', 'weather']" in r.output and "label column 'label'" in r.output
    assert "the label sets differ" in r.output


def test_same_size_but_other_label_names_is_refused(workdir):
    folder = save_classifier_folder(workdir / "nli-model", 3, NLI_LABELS)
    data = workdir / "other"
    data.mkdir()
    rows = "".join(json.dumps({"premise": "a man", "hypothesis": "a person", "label": y}) + "\n"
                   for y in ("yes", "no", "maybe"))
    _write(data / "train.jsonl", rows)
    _write(data / "dev.jsonl", rows)
    r = cli("attack", folder, "--data", "jsonl", "--data-dir", data, *PAIR, "--limit", "2")
    assert r.exit_code == 2, r.output
    assert "labels ['entailment', 'neutral', 'contradiction']" in r.output and "['maybe', 'no', 'yes']" in r.output
    assert "are not the model's" in r.output


def test_unnamed_heads_and_numeric_labels_match_by_position(workdir):
    folder = save_classifier_folder(workdir / "plain", 4)  # LABEL_0..LABEL_3: no names to compare
    data = write_topics_csv(workdir / "topics", 8, 4)
    r = cli("attack", folder, "--data", "csv", "--data-dir", data, "--attack", "char", "--limit", "2")
    assert r.exit_code == 0, r.output


def test_the_same_labels_in_another_order_are_remapped_for_evaluation(workdir):
    from robustkit.cli._common import load_target
    folder = save_classifier_folder(workdir / "nli-model", 3, NLI_LABELS)
    data = write_nli_jsonl(workdir / "nli", 6, 6)
    plain = load_text_dataset("jsonl", data_dir=data, text_column="premise", text_pair_column="hypothesis")
    t = load_target(str(folder), "jsonl", str(data), data_options=["text_column=premise",
                                                                   "text_pair_column=hypothesis"])
    assert t.ds.class_names == NLI_LABELS  # the model's order
    names = [plain.class_names[i] for i in plain.test_labels.tolist()]
    assert [NLI_LABELS[i] for i in t.ds.test_labels.tolist()] == names  # every sample keeps its label


def test_training_from_a_head_of_another_size_asks_for_a_new_head(workdir):
    folder = save_classifier_folder(workdir / "nli-model", 3, NLI_LABELS)
    data = write_topics_csv(workdir / "topics", 16, 4)
    args = ["train", "--data", "csv", "--data-dir", data, "--model", folder, "--epochs", "1", "--batch-size", "8",
            "--out-dir", workdir / "runs", "--name", "t"]
    r = cli(*args)
    assert r.exit_code == 2, r.output
    assert "3-class classification head with labels ['entailment', 'neutral', 'contradiction']" in r.output
    assert "training data has 4 classes ['food', 'music', 'sports', 'weather']" in r.output
    assert "model_args.new_head=true" in r.output
    r = cli(*args, "--set", "model_args.new_head=true", "--set", "model_args.max_length=24")
    assert r.exit_code == 0, r.output
    from robustkit.checkpoint import load_model
    model, meta = load_model(workdir / "runs" / "t" / "last.safetensors")
    assert model.num_classes == 4 and model.encoder.config.id2label[0] == "food"


def test_training_with_the_labels_in_another_order_names_the_order_to_use(workdir):
    folder = save_classifier_folder(workdir / "nli-model", 3, NLI_LABELS)
    with pytest.raises(ModelFolderError, match=r"same labels in another order \['contradiction', 'entailment', "
                                               r"'neutral'\].*model_args.labels=\[entailment,neutral,contradiction\]"):
        build_text_model(str(folder), 3, class_names=sorted(NLI_LABELS), max_length=16)
    model = build_text_model(str(folder), 3, class_names=NLI_LABELS, max_length=16)
    assert model.head_kind == "sequence-classification"  # its own head, kept for fine-tuning


def test_a_checkpoint_evaluated_on_data_with_other_labels_names_both(workdir):
    from _text_fixtures import make_tiny_model
    from robustkit.checkpoint import save_model
    model = make_tiny_model(workdir / "tok", max_length=16)
    ckpt = save_model(workdir / "m.safetensors", model, data={"name": "csv", "num_classes": 2,
                                                              "class_names": ["neg", "pos"]})
    data = write_topics_csv(workdir / "topics", 8, 4)
    r = cli("attack", ckpt, "--data", "csv", "--data-dir", data, "--limit", "2")
    assert r.exit_code == 2, r.output
    assert "2-class head (the data it was trained on ('csv')) with labels ['neg', 'pos']" in r.output
    assert "4 classes ['food', 'music', 'sports', 'weather']" in r.output
    assert torch.is_tensor(model.encode(["x"])["input_ids"])
