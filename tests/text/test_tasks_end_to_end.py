"""A user's own tasks end to end through the CLI (issue 16, acceptance 4), on tiny BERTs built from a config (no
download): a two-sentence NLI task (premise/hypothesis JSONL, 3 classes) from an AutoModelForSequenceClassification
folder with named labels, and a 4-class CSV task from an encoder-only folder that gets a new head. Each is trained
for one short epoch, attacked with word substitutions, audited (quick preset) and certified."""
from __future__ import annotations

import inspect
import json

import pytest
import torch
from typer.testing import CliRunner

from _text_fixtures import NLI_LABELS, save_classifier_folder, save_encoder_folder, write_nli_jsonl, write_topics_csv
from robustkit.checkpoint import load_model
from robustkit.cli import app
from robustkit.data.text import PAIR_MARK

runner = CliRunner()
TRAIN = ["--epochs", "1", "--batch-size", "16", "--set", "optimizer=adamw", "--lr", "0.003",
         "--set", "model_args.max_length=32", "--set", "eval_size=12"]


def _has_text_certify() -> tuple[bool, bool]:
    """(the library has SAFER text certification, the `certify` command runs it): another part of the project."""
    try:
        from robustkit.evaluation import certify as certify_module
        from robustkit.cli import certify as certify_cli
    except ImportError:
        return False, False
    lib = hasattr(certify_module, "certify_substitutions")
    return lib, lib and "certify_substitutions" in inspect.getsource(certify_cli)


HAS_CERTIFY, HAS_CERTIFY_CLI = _has_text_certify()


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    assert res.exit_code == 0, res.output
    return res


def _json(res) -> dict:
    out = res.stdout
    return json.loads(out[out.index("{"):])


def _check_pairs_kept(path, n):
    """Word attacks substitute words of either sentence and never touch the separator."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == n
    for r in rows:
        orig, adv = r["original"].split(), r["adversarial"].split()
        assert orig.count(PAIR_MARK) == 1 and len(adv) == len(orig)
        assert adv.index(PAIR_MARK) == orig.index(PAIR_MARK)
    return rows


def _attack_audit_certify(run, data, n, *, certify_words):
    r = cli("attack", run, "--data-dir", data, "--attack", "word", "--param", "candidates=embedding",
            "--param", "min_embedding_cos=0.0", "--limit", n, "--eps", "0.3", "--json")
    doc = _json(r)
    assert doc["modality"] == "text" and doc["n"] == n and 0 <= doc["robust_accuracy"] <= doc["clean_accuracy"]
    adversarial = run / "attack-word" / "adversarial.jsonl"
    r = cli("audit", run, "--data-dir", data, "--preset", "quick", "--limit", n, "--json")
    audit = _json(r)["evaluation"]
    assert audit["n"] == n and audit["preset"] == "quick" and audit["attacks"][0]["name"] == "word"
    assert audit["robust_accuracy"]["value"] <= audit["clean_accuracy"]["value"]
    if HAS_CERTIFY:
        from robustkit.evaluation.certify import certify_substitutions
        model, meta = load_model(run / "last.safetensors")
        from robustkit.modality import get_modality
        ds = get_modality("text").load(meta["data"]["name"], data_dir=data, **_columns(meta["data"]))
        table = {w: subs for w, subs in certify_words.items()}
        res = certify_substitutions(model, ds.test_texts[:n], ds.test_labels[:n], n0=4, n=16, alpha=0.1,
                                    candidates=lambda w: table.get(w, []), shares=[0.0, 0.2])
        assert res["num_samples"] == n and len(res["certified_words"]) == n
    return adversarial


def _columns(spec):
    return {k: spec[k] for k in ("text_column", "text_pair_column", "label_column") if spec.get(k)}


def test_nli_pairs_from_a_sequence_classification_folder_end_to_end(workdir):
    data = write_nli_jsonl(workdir / "nli", 48, 12)
    folder = save_classifier_folder(workdir / "my-nli-bert", 3, NLI_LABELS)
    cli("train", "--data", "jsonl", "--data-dir", data, "--model", folder, *TRAIN, "--out-dir", workdir / "runs",
        "--name", "nli", "--set", "model_args.text_column=premise", "--set", "model_args.text_pair_column=hypothesis",
        "--set", f"model_args.labels=[{','.join(NLI_LABELS)}]", "--json")
    run = workdir / "runs" / "nli"
    model, meta = load_model(run / "last.safetensors")
    # its own head fine-tuned, labels in the model's order, the pair column recorded for re-audits
    assert model.head_kind == "sequence-classification" and model.num_classes == 3
    assert meta["data"]["class_names"] == NLI_LABELS and meta["data"]["text_pair_column"] == "hypothesis"
    batch = model.encode(["a man is sleeping ||| a person is sleeping"])
    assert batch["token_type_ids"].max() == 1
    adversarial = _attack_audit_certify(run, data, 6, certify_words={"man": ["woman"], "sleeping": ["sitting"],
                                                                      "running": ["eating"]})
    _check_pairs_kept(adversarial, 6)
    # the user's folder itself (not trained by robustkit) is attacked the same way, its labels matched by name
    r = cli("attack", folder, "--data", "jsonl", "--data-dir", data, "--data-option", "text_column=premise",
            "--data-option", "text_pair_column=hypothesis", "--attack", "char", "--limit", "4", "--json")
    doc = _json(r)
    assert doc["n"] == 4
    _check_pairs_kept(workdir / doc["files"]["adversarial"], 4)


def test_four_classes_from_an_encoder_only_folder_end_to_end(workdir):
    data = write_topics_csv(workdir / "topics", 48, 12)
    folder = save_encoder_folder(workdir / "my-encoder")
    cli("train", "--data", "csv", "--data-dir", data, "--model", folder, *TRAIN, "--out-dir", workdir / "runs",
        "--name", "topics", "--json")
    run = workdir / "runs" / "topics"
    model, meta = load_model(run / "last.safetensors")
    assert model.head_kind == "mean" and model.classifier.out_features == 4
    assert meta["data"]["class_names"] == ["food", "music", "sports", "weather"]
    _attack_audit_certify(run, data, 6, certify_words={"good": ["fine"], "bad": ["poor"], "pizza": ["bread"]})


@pytest.mark.skipif(not HAS_CERTIFY_CLI, reason="the `certify` command does not certify text models yet "
                                                "(robustkit.cli.certify has no certify_substitutions)")
def test_certify_command_on_a_pair_task(workdir):
    data = write_nli_jsonl(workdir / "nli", 32, 6)
    folder = save_classifier_folder(workdir / "my-nli-bert", 3, NLI_LABELS)
    cli("train", "--data", "jsonl", "--data-dir", data, "--model", folder, *TRAIN, "--out-dir", workdir / "runs",
        "--name", "nli", "--set", "model_args.text_column=premise", "--set", "model_args.text_pair_column=hypothesis",
        "--set", f"model_args.labels=[{','.join(NLI_LABELS)}]")
    r = cli("certify", workdir / "runs" / "nli", "--data-dir", data, "--limit", "3", "--n0", "4", "--n", "16",
            "--alpha", "0.1", "--json")
    doc = _json(r)
    assert doc["num_samples"] == 3 and torch.tensor(doc["certified_words"]).numel() == 3
