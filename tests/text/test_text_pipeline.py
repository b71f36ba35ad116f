"""The whole text path on a tiny local model: the one trainer, checkpoints, the one audit and report, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from robustkit.checkpoint import load_model
from robustkit.cli import app
from robustkit.config import TrainConfig
from robustkit.data import load_dataset
from robustkit.evaluation import run_audit, write_report
from robustkit.modality import get_modality
from robustkit.threat import SubstitutionThreat
from robustkit.training import train



@pytest.fixture()
def csv_data(tmp_path):
    from _text_fixtures import write_synthetic_csv
    return write_synthetic_csv(tmp_path / "data")


def _cfg(tmp_path, model_folder, csv_data, method, model_args=None, **kw):
    return TrainConfig(name=f"tiny-{method}", out_dir=str(tmp_path / "runs"), data="csv", data_dir=str(csv_data),
                       model=str(model_folder), model_args=model_args or {"max_length": 24}, method=method, eps=0.1,
                       norm="l2",
                       epochs=2, batch_size=16, optimizer="adamw", lr=3e-3, weight_decay=0.0, schedule="constant",
                       eval_batch_size=64, **kw)


@pytest.mark.parametrize("method", ["standard", "freelb", "augment"])
def test_train_text_writes_a_run_that_loads_and_audits(tmp_path, model_folder, csv_data, method):
    args = {"attack_args": {"candidates": "embedding", "min_embedding_cos": 0.0}} if method == "augment" else {}
    res = train(_cfg(tmp_path, model_folder, csv_data, method, method_args=args), progress=False)
    assert len(res.history) == 2 and res.extra["trainable_parameters"] > 0
    assert res.history[-1]["val_clean_acc"] >= 0.5
    # A text run folder has the same shape as a vision one.
    for name in ("config.yaml", "metrics.jsonl", "best.safetensors", "last.safetensors", "state.safetensors"):
        assert (res.run_dir / name).is_file(), name
    model, meta = load_model(res.run_dir)
    assert meta["method"]["name"] == method and meta["data"]["class_names"] == ["neg", "pos"]
    assert meta["data"]["modality"] == "text"
    if method == "standard":
        ds = load_dataset("csv", data_dir=str(csv_data))
        x, y = get_modality("text").eval_split(ds, 12)
        doc = run_audit(model, x, y, SubstitutionThreat(0.3), attacks=[("char", {})], gallery=2,
                        class_names=ds.class_names, sweep=[0.1, 0.3], sweep_preset="quick")
        ev = doc["evaluation"]
        assert doc["format"] == "robustkit-audit" and doc["modality"] == "text"
        assert 0.0 <= ev["robust_accuracy"]["value"] <= ev["clean_accuracy"]["value"]
        assert ev["attacks"][0]["details"]["constraint_violations"] == 0
        files = write_report(doc, tmp_path / "report")
        assert "## Attack ensemble" in files["markdown"].read_text()
        assert "<table" in files["html"].read_text() and "</table>" in files["html"].read_text()


def test_lora_freelb_run_trains_adapters_only(tmp_path, model_folder, csv_data):
    pytest.importorskip("peft")
    cfg = _cfg(tmp_path, model_folder, csv_data, "freelb", model_args={"max_length": 24, "lora": {"r": 4}})
    cfg.epochs = 1
    res = train(cfg, progress=False)
    assert res.extra["trainable_parameters"] < 0.2 * res.extra["total_parameters"]
    model, meta = load_model(res.run_dir)
    assert meta["model"]["lora"] == {"r": 4} and any("lora_" in n for n, _ in model.named_parameters())


def test_resume_continues_a_text_run(tmp_path, model_folder, csv_data):
    cfg = _cfg(tmp_path, model_folder, csv_data, "standard")
    cfg.epochs = 1
    train(cfg, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, progress=False)
    cfg.epochs = 2
    (tmp_path / "runs" / "tiny-standard" / "config.yaml").write_text(cfg.to_yaml())
    res = train(cfg, resume=True, progress=False)
    assert [r["epoch"] for r in res.history] == [0, 1]
    # A fresh process loads a text checkpoint with nothing imported beforehand (the family registers itself).
    code = "from robustkit.checkpoint import load_model; print(type(load_model(__import__('sys').argv[1])[0]).__name__)"
    out = subprocess.run([sys.executable, "-c", code, str(res.run_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "TextClassifier", out.stderr[-2000:]


def test_unknown_text_model_args_are_rejected():
    split = get_modality("text").data_options
    with pytest.raises(ValueError, match="Unknown model_args key"):
        split({"max_len": 3})
    model_kw, data_kw = split({"freeze_layers": 2, "text_column": "review"})
    assert model_kw == {"freeze_layers": 2, "max_length": 64} and data_kw == {"text_column": "review"}


def test_vision_method_on_text_data_is_a_clear_error(tmp_path, model_folder, csv_data):
    with pytest.raises(ValueError, match="'pgd' trains vision"):
        train(_cfg(tmp_path, model_folder, csv_data, "pgd"), progress=False)


def test_cli_train_attack_audit_on_text(tmp_path, model_folder, csv_data):
    runner = CliRunner()
    out = tmp_path / "runs"
    r = runner.invoke(app, ["train", "--set", "data=csv", "--set", f"data_dir={csv_data}",
                            "--set", f"model={model_folder}", "--set", "epochs=1", "--set", "batch_size=16",
                            "--set", "optimizer=adamw", "--set", "lr=0.003", "--set", f"out_dir={out}",
                            "--set", "name=cli", "--set", "method=embed-pgd", "--set", "norm=l2",
                            "--set", "model_args.max_length=24", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["epochs"] == 1
    r = runner.invoke(app, ["attack", str(out / "cli"), "--attack", "char", "--limit", "8", "--eps", "0.3",
                            "--data-dir", str(csv_data), "--out", str(tmp_path / "atk")])
    assert r.exit_code == 0, r.output
    assert "robust accuracy" in r.output and (tmp_path / "atk" / "attack.json").is_file()
    assert (tmp_path / "atk" / "attack.md").is_file() and (tmp_path / "atk" / "adversarial.jsonl").is_file()
    r = runner.invoke(app, ["audit", str(out / "cli"), "--attack", "char", "--limit", "8", "--eps", "0.3",
                            "--sweep", "0.1,0.3", "--preset", "quick", "--data-dir", str(csv_data)])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "cli" / "audit.json").read_text())
    assert doc["threat"]["eps"] == 0.3 and doc["sweep"]["eps"] == [0.1, 0.3]
    assert (out / "cli" / "audit.html").is_file() and (out / "cli" / "audit.md").is_file()
    # the old spelling still works for one release, and says what to type instead
    r = runner.invoke(app, ["text", "audit", str(out / "cli"), "--attack", "char", "--limit", "4",
                            "--data-dir", str(csv_data)])
    assert r.exit_code == 0, r.output
    assert "robustkit audit" in r.output
    r = runner.invoke(app, ["attack", str(tmp_path / "nope"), "--data-dir", str(csv_data)])
    assert r.exit_code == 2 and "error:" in r.output
