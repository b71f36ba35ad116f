"""Experiment tracking (issue 17): MLflow with its local file store, W&B through a stand-in module."""
from __future__ import annotations

import json
import sys
import types

import pytest

from robustkit.config import TrainConfig
from robustkit.training import train


def _cfg(tmp_path, **kw):
    base = dict(data="digits", model="mlp", epochs=2, batch_size=256, limit=300, eval_size=50, out_dir=str(tmp_path),
                name="tracked", optimizer="adam", lr=1e-3)
    base.update(kw)
    return TrainConfig(**base)


def test_mlflow_gets_params_per_epoch_metrics_and_the_run_files_and_a_resume_continues_it(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    train(_cfg(tmp_path, log=["mlflow"]))
    run_id = json.loads((tmp_path / "tracked" / "tracking.json").read_text())["mlflow"]
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "mlp" and run.data.params["epochs"] == "2"
    assert [m.step for m in client.get_metric_history(run_id, "val_clean_acc")] == [0, 1]
    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "metrics.jsonl", "curve.png"} <= files
    train(_cfg(tmp_path, log=["mlflow"], epochs=3), resume=True)  # the same tracked run goes on
    assert [m.step for m in client.get_metric_history(run_id, "val_clean_acc")] == [0, 1, 2]


def test_wandb_is_driven_through_its_public_api(tmp_path, monkeypatch):
    calls = {"log": [], "save": [], "finish": []}

    class Run:
        id = "abc123"

        def log(self, metrics, step):
            calls["log"].append((step, metrics))

        def save(self, path, base_path, policy):
            calls["save"].append(path)

        def finish(self, exit_code):
            calls["finish"].append(exit_code)

    def init(**kw):
        calls["init"] = kw
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    train(_cfg(tmp_path, log="wandb"))
    assert calls["init"]["mode"] == "offline" and calls["init"]["config"]["model"] == "mlp"
    assert [s for s, _ in calls["log"]] == [0, 1] and "val_clean_acc" in calls["log"][0][1]
    assert any(p.endswith("metrics.jsonl") for p in calls["save"]) and calls["finish"] == [0]


def test_unknown_or_missing_trackers_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="'log' parameter of TrainConfig must be one of"):
        _cfg(tmp_path, log=["neptune"])
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ModuleNotFoundError, match="log: wandb needs the Weights & Biases client"):
        train(_cfg(tmp_path, log=["wandb"]))
