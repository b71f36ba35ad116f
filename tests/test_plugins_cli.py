"""Acceptance: adding a dataset, an objective, an attack and a sanity check is one definition and a
registry decorator each; all four then run through the CLI (train, attack, audit) untouched."""
from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from robustkit.attacks import Attack, register_attack
from robustkit.attacks.registry import unregister_attack
from robustkit.cli import app
from robustkit.data import Dataset, register_dataset, unregister_dataset
from robustkit.evaluation.sanity import make_check, register_check, unregister_check
from robustkit.training.objectives import Objective, register_objective
from robustkit.training.objectives.base import _OBJECTIVES

ENV = {"CI": "1"}


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (0.3 + 0.4 * y.view(-1, 1, 1, 1).float() + 0.1 * torch.randn(n, 1, 4, 4, generator=g)).clamp(0, 1)
    return x, y


def _toy_loader(*, data_dir=None, seed=0):
    xtr, ytr = _blobs(200, 0)
    xte, yte = _blobs(60, 1)
    return Dataset("toy-blobs", xtr, ytr, xte, yte, ["dark", "bright"], (0.5,), (0.25,))


class _ToyNoise(Objective):
    """Cross-entropy on inputs with uniform noise of the threat's size (a toy objective)."""

    modalities = ("vision",)
    select_best_by = "clean"

    def __call__(self, model, x, y, *, eps=None):
        noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(self.seed)) * 2 - 1) * self.threat.eps
        logits = model((x + noise).clamp(0, 1))
        return F.cross_entropy(logits, y), {"clean_acc": float((logits.argmax(1) == y).float().mean())}


class _ToyShift(Attack):
    """Brighten every pixel by eps (a toy attack)."""

    kind = "black-box"

    def _perturb(self, model, x, y, target, generator):
        return x + self.threat.eps


def _toy_check(ctx):
    return make_check("toy_check", "pass", f"looked at {ctx.modality.size(ctx.x)} samples")


def test_toy_dataset_objective_attack_and_check_run_through_the_cli(tmp_path):
    register_dataset("toy-blobs", "two blobs of 4x4 images", modality="vision")(_toy_loader)
    register_objective("toy-noise")(_ToyNoise)
    register_attack("toy-shift")(_ToyShift)
    register_check("toy_check", stage="preflight", modalities=("vision",))(_toy_check)
    runner = CliRunner()
    try:
        r = runner.invoke(app, ["list", "--json"], env=ENV)
        listed = json.loads(r.stdout)
        assert "toy-blobs" in listed["datasets"] and "toy-noise" in listed["methods"]
        assert listed["attacks"]["toy-shift"]["kind"] == "black-box" and "toy_check" in listed["checks"]
        r = runner.invoke(app, ["train", "--data", "toy-blobs", "--model", "mlp", "--method", "toy-noise", "--eps",
                                "0.05", "--epochs", "2", "--set", "optimizer=adam", "--set", "lr=0.01",
                                "--out-dir", str(tmp_path), "--name", "toy", "--json"], env=ENV)
        assert r.exit_code == 0, r.output
        run = tmp_path / "toy"
        assert json.loads(r.stdout)["best"]["val_clean_acc"] > 0.9
        r = runner.invoke(app, ["attack", str(run), "--attack", "toy-shift", "--eps", "0.3", "--json"], env=ENV)
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["attack"]["attack"] == "toy-shift" and doc["robust_accuracy"] < doc["clean_accuracy"]
        assert (run / "attack-toy-shift" / "attack.md").is_file()
        r = runner.invoke(app, ["audit", str(run), "--attack", "toy-shift", "--eps", "0.3", "--json"], env=ENV)
        assert r.exit_code == 0, r.output
        audit = json.loads(r.stdout)
        assert [a["name"] for a in audit["evaluation"]["attacks"]] == ["toy-shift"]
        assert "toy_check" in [c["name"] for c in audit["preflight"]]
        assert (run / "audit.html").is_file() and "toy_check" in (run / "audit.md").read_text()
    finally:
        unregister_dataset("toy-blobs")
        _OBJECTIVES.pop("toy-noise", None)
        unregister_attack("toy-shift")
        unregister_check("toy_check")


def test_cli_says_what_is_wrong_with_the_model_or_its_data(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["audit", "--preset", "quick"], env=ENV)
    assert r.exit_code == 2 and "The model is missing" in r.output
    r = runner.invoke(app, ["train", "--data", "digits", "--epochs", "1", "--limit", "100", "--out-dir",
                            str(tmp_path), "--name", "d"], env=ENV)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["audit", str(tmp_path / "d"), "--data", "sst2", "--data-dir", str(tmp_path)], env=ENV)
    assert r.exit_code == 2 and "is a vision model" in r.output and "text data" in r.output
    r = runner.invoke(app, ["attack", str(tmp_path / "d"), "--attack", "wrod"], env=ENV)
    assert r.exit_code == 2 and "Did you mean 'word'" in r.output
