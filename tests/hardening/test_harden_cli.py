"""`robustkit harden` end to end on a tiny digits run: a new run folder that every command loads, sparsity
visible in the saved weights, the source folder untouched, and clear errors for bad input (exit 2)."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from robustkit.checkpoint import load_model, read_tensors, save_model
from robustkit.cli import app
from robustkit.hardening import harden
from robustkit.hardening.prune import prunable_layers
from robustkit.hardening.run import folder_hashes

runner = CliRunner()
FAST = ["--audit-preset", "none", "--eval-limit", "60"]


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_harden_prune_writes_a_loadable_run_and_leaves_the_source_alone(digits_run, tmp_path):
    before = folder_hashes(digits_run)
    res = _run("harden", digits_run, "--prune", "0.5", *FAST, "--out-dir", tmp_path, "--name", "p50")
    assert res.exit_code == 0, res.output
    assert folder_hashes(digits_run) == before
    run = tmp_path / "p50"
    for f in ("best.safetensors", "last.safetensors", "config.yaml", "harden.json", "harden.md", "harden.html"):
        assert (run / f).is_file(), f
    model, meta = load_model(run)  # the same loader as attack/audit/serve
    tensors, _ = read_tensors(run / "best.safetensors")
    names = [n for n, _ in prunable_layers(model)]
    zeros = sum(int((tensors[f"{n}.weight"] == 0).sum()) for n in names)
    total = sum(tensors[f"{n}.weight"].numel() for n in names)
    assert zeros / total == pytest.approx(0.5, abs=0.01)
    h = meta["extra"]["hardening"]
    assert h["parent"]["sha256"] == load_model(digits_run)[1]["sha256"]
    assert h["steps"][0]["step"] == "prune"
    doc = json.loads((run / "harden.json").read_text())
    assert doc["source_folder_unchanged"] and doc["hardened"]["nonzero_share"] < 0.6
    assert set(doc["latency"]["batch"]) == {"1", "256"} and doc["latency"]["threads"] == 1
    # re-audit through the CLI (quick preset on a few samples)
    res = _run("audit", run, "--attack", "pgd", "--param", "steps=5", "--limit", "20", "--json")
    assert res.exit_code == 0, res.output


def test_harden_int8_reaudits_and_serves(digits_run, tmp_path, digits):
    before = folder_hashes(digits_run)
    doc = harden(digits_run, quantize="int8", out_dir=str(tmp_path), name="q", audit_preset="none",
                 audit_attacks=[("pgd", {"steps": 5}), ("square", {"n_queries": 50})], audit_limit=40, eval_limit=60,
                 latency_repeats=3)
    assert folder_hashes(digits_run) == before
    run = tmp_path / "q"
    h = doc["hardened"]
    assert h["differentiable"] is False and h["file_bytes"] * 3 < doc["original"]["file_bytes"]
    assert [a["name"] for a in h["audit"]["attacks"]] == ["transfer", "square"]
    assert "transfer" in (run / "audit.md").read_text() and "Hardening" in (run / "audit.html").read_text()
    assert "PGD-20 crafted on the float twin" in h["eval"]["pgd"]["attack"]
    # the audit command runs on the int8 run folder (black-box here, to stay fast; transfer: test_reaudit.py)
    res = _run("audit", run, "--attack", "square", "--param", "n_queries=30", "--limit", "30", "--json")
    assert res.exit_code == 0, res.output
    audit = json.loads(res.output[res.output.index("{"):])
    assert [a["name"] for a in audit["evaluation"]["attacks"]] == ["square"] and audit["differentiable"] is False
    # serving loads it with the same loader
    from robustkit.serve import load_served_model
    lm = load_served_model(run)
    logits, _ = lm.run(digits.x_test[:8])
    model, _ = load_model(run)
    with torch.no_grad():
        assert torch.allclose(logits, model(digits.x_test[:8]))
    assert lm.card["hardening"]


@pytest.mark.parametrize("args, needle", [
    (["--prune", "1.0"], "'prune' parameter of harden must be a number in [0, 1)"),
    (["--prune", "-0.2"], "'prune' parameter of harden must be a number in [0, 1)"),
    (["--quantize", "int4"], "'quantize' parameter of harden must be one of"),
    (["--prune", "0.5", "--finetune", "pgdd"], "Unknown training method 'pgdd'"),
    (["--structured"], "Nothing to do"),
    (["--quantize", "int8-qat"], "give --finetune METHOD"),
])
def test_bad_options_fail_cleanly(digits_run, tmp_path, args, needle):
    before = folder_hashes(digits_run)
    res = _run("harden", digits_run, *args, *FAST, "--out-dir", tmp_path)
    assert res.exit_code == 2, res.output
    assert needle in " ".join(res.output.split())
    assert folder_hashes(digits_run) == before
    assert not any(tmp_path.iterdir())  # nothing written


def test_unsupported_layer_and_no_prunable_layer(digits, tmp_path):
    from robustkit.models import create_model
    before_dirs = []
    for name, model, args, needle in [
            ("resnet", create_model("preact-resnet18", input_shape=(1, 8, 8), num_classes=10), ["--quantize", "int8"],
             "layer '1' (_PreActNet)"),
            ("mlp", create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=8, depth=1),
             ["--prune", "0.5", "--structured"], "no Conv2d layer")]:
        src = tmp_path / name
        save_model(src / "best.safetensors", model, data=digits.spec(),
                   threat={"norm": "linf", "eps": 0.1, "bounds": [0.0, 1.0]})
        before = folder_hashes(src)
        res = _run("harden", src, *args, *FAST, "--out-dir", tmp_path / "out")
        assert res.exit_code == 2, res.output
        assert needle in " ".join(res.output.split()), res.output
        assert folder_hashes(src) == before
        before_dirs.append(src)


def test_refuses_to_write_into_the_source_or_over_a_run(digits_run, tmp_path):
    res = _run("harden", digits_run, "--prune", "0.3", *FAST, "--out-dir", digits_run.parent, "--name",
               digits_run.name)
    assert res.exit_code == 2 and "never writes into its source" in " ".join(res.output.split())
    ok = _run("harden", digits_run, "--prune", "0.3", *FAST, "--out-dir", tmp_path, "--name", "x")
    assert ok.exit_code == 0, ok.output
    again = _run("harden", digits_run, "--prune", "0.3", *FAST, "--out-dir", tmp_path, "--name", "x")
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_pruned_quantization_aware_finetuning_keeps_zeros(digits_run, tmp_path):
    doc = harden(digits_run, prune=0.5, quantize="int8-qat", finetune="fgsm", epochs=1, out_dir=str(tmp_path),
                 name="qat", audit_preset="none", eval_limit=60, latency_repeats=2)
    h = doc["hardened"]
    assert not h["differentiable"] and h["nonzero_share"] < 0.6  # pruned weights stayed zero through QAT
    assert [s["step"] for s in doc["hardening"]["steps"]] == ["prune", "finetune", "quantize"]
    assert abs(doc["comparison"]["clean_accuracy_points"]) < 15
    model, meta = load_model(tmp_path / "qat")
    assert meta["model"]["quantization"]["flow"] == "int8-static"
