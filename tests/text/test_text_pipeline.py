"""The whole text path on a tiny local model: train_text (through the CLI), checkpoints, audit, reports."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from robustkit.cli import app
from robustkit.config import TrainConfig
from robustkit.text.audit import audit_text, load_text_model, render_text_report
from robustkit.text.train import split_model_args, train_text

from conftest import synthetic_sentences


@pytest.fixture()
def csv_data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for split, n, seed in (("train", 64, 0), ("dev", 24, 1)):
        texts, labels = synthetic_sentences(n, seed=seed)
        rows = ["text,label"] + [f"{t},{'pos' if y else 'neg'}" for t, y in zip(texts, labels)]
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return folder


def _cfg(tmp_path, model_folder, csv_data, method, model_args=None, **kw):
    return TrainConfig(name=f"tiny-{method}", out_dir=str(tmp_path / "runs"), data="csv", data_dir=str(csv_data),
                       model=str(model_folder), model_args=model_args or {"max_length": 24}, method=method, eps=0.1,
                       norm="l2",
                       epochs=2, batch_size=16, optimizer="adamw", lr=3e-3, weight_decay=0.0, schedule="constant",
                       eval_batch_size=64, **kw)


@pytest.mark.parametrize("method", ["standard", "freelb", "augment"])
def test_train_text_writes_a_run_that_loads_and_audits(tmp_path, model_folder, csv_data, method):
    args = {"attack_args": {"candidates": "embedding", "min_embedding_cos": 0.0}} if method == "augment" else {}
    res = train_text(_cfg(tmp_path, model_folder, csv_data, method, method_args=args), progress=False)
    assert len(res.history) == 2 and res.extra["trainable_parameters"] > 0
    assert res.history[-1]["val_clean_acc"] >= 0.5
    model, meta = load_text_model(res.run_dir)
    assert meta["method"]["name"] == method and meta["data"]["class_names"] == ["neg", "pos"]
    if method == "standard":
        doc = audit_text(res.run_dir, data_dir=str(csv_data), limit=12, attacks=["char"], examples=2,
                         attack_params={"char": {"max_share": 0.3}})
        assert 0.0 <= doc["attacks"]["char"]["accuracy"] <= doc["clean_accuracy"]
        assert doc["attacks"]["char"]["constraint_violations"] == 0
        files = render_text_report(doc, tmp_path / "report")
        assert json.loads(open(files["json"]).read())["kind"] == "text-audit"
        assert "| attack | accuracy" in open(files["markdown"]).read()
        assert "<table>" in open(files["html"]).read()


def test_lora_freelb_run_trains_adapters_only(tmp_path, model_folder, csv_data):
    pytest.importorskip("peft")
    cfg = _cfg(tmp_path, model_folder, csv_data, "freelb", model_args={"max_length": 24, "lora": {"r": 4}})
    cfg.epochs = 1
    res = train_text(cfg, progress=False)
    assert res.extra["trainable_parameters"] < 0.2 * res.extra["total_parameters"]
    model, meta = load_text_model(res.run_dir)
    assert meta["model"]["lora"] == {"r": 4} and any("lora_" in n for n, _ in model.named_parameters())


def test_resume_continues_a_text_run(tmp_path, model_folder, csv_data):
    cfg = _cfg(tmp_path, model_folder, csv_data, "standard")
    cfg.epochs = 1
    train_text(cfg, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train_text(cfg, progress=False)
    cfg.epochs = 2
    (tmp_path / "runs" / "tiny-standard" / "config.yaml").write_text(cfg.to_yaml())
    res = train_text(cfg, resume=True, progress=False)
    assert [r["epoch"] for r in res.history] == [0, 1]


def test_unknown_text_model_args_are_rejected():
    with pytest.raises(ValueError, match="Unknown model_args key"):
        split_model_args({"max_len": 3})
    model_kw, data_kw = split_model_args({"freeze_layers": 2, "text_column": "review"})
    assert model_kw == {"freeze_layers": 2, "max_length": 64} and data_kw == {"text_column": "review"}


def test_cli_text_train_attack_audit(tmp_path, model_folder, csv_data):
    runner = CliRunner()
    out = tmp_path / "runs"
    r = runner.invoke(app, ["text", "train", "--set", "data=csv", "--set", f"data_dir={csv_data}",
                            "--set", f"model={model_folder}", "--set", "epochs=1", "--set", "batch_size=16",
                            "--set", "optimizer=adamw", "--set", "lr=0.003", "--set", f"out_dir={out}",
                            "--set", "name=cli", "--set", "method=embed-pgd", "--set", "norm=l2",
                            "--set", "model_args.max_length=24", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["epochs"] == 1
    r = runner.invoke(app, ["text", "attack", "--checkpoint", str(out / "cli"), "--attack", "char", "--limit", "8",
                            "--data-dir", str(csv_data), "--out", str(tmp_path / "atk")])
    assert r.exit_code == 0, r.output
    assert "attacked accuracy" in r.output and (tmp_path / "atk" / "attack.json").is_file()
    r = runner.invoke(app, ["text", "audit", str(out / "cli"), "--attack", "char", "--limit", "8",
                            "--data-dir", str(csv_data)])
    assert r.exit_code == 0, r.output
    assert (out / "cli" / "audit" / "audit.html").is_file()
    r = runner.invoke(app, ["text", "attack", "--checkpoint", str(tmp_path / "nope"), "--data-dir", str(csv_data)])
    assert r.exit_code == 2 and "error:" in r.output
