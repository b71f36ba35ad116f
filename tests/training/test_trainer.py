import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from robustkit.checkpoint import load_model
from robustkit.config import TrainConfig
from robustkit.training import available_objectives, create_objective, read_metrics, train
from robustkit import ThreatModel


def _cfg(tmp_path, **kw):
    base = dict(name="run", out_dir=str(tmp_path), data="digits", model="small-cnn", method="fast", eps=0.1,
                epochs=2, lr=0.05, batch_size=64, eval_size=100, schedule="cyclic")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", sorted(set(available_objectives()) & {"standard", "fgsm", "fast", "pgd", "trades",
                                                                           "mart", "mixed"}))
def test_every_objective_trains_and_writes_a_run_folder(tmp_path, method):
    args = {"steps": 3} if method in ("pgd", "trades", "mart") else {}
    if method == "mixed":
        args = {"attack": "pgd", "attack_params": {"steps": 3}, "lam": 0.5}
    result = train(_cfg(tmp_path, method=method, method_args=args, limit=400), progress=False)
    run = Path(result.run_dir)
    assert {"config.yaml", "metrics.jsonl", "last.safetensors", "best.safetensors", "state.safetensors",
            "curve.png"} <= {p.name for p in run.iterdir()}
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(0 <= r["val_clean_acc"] <= 1 and 0 <= r["val_robust_acc"] <= 1 for r in rows)
    model, meta = load_model(run)
    assert meta["method"]["name"] == method and meta["data"]["name"] == "digits"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_objective_stats_and_gradients(digits, digits_model):
    x, y = digits.x_train[:32], digits.y_train[:32]
    threat = ThreatModel("linf", 0.1)
    for name in ("fgsm", "trades", "mart"):
        obj = create_objective(name, threat, **({"steps": 2} if name != "fgsm" else {}))
        digits_model.train()
        loss, stats = obj(digits_model, x, y)
        assert loss.requires_grad and torch.isfinite(loss)
        assert 0 <= stats["adv_acc"] <= stats.get("clean_acc", 1) + 0.2
    digits_model.eval()


def test_adversarial_training_beats_standard_under_attack(tmp_path):
    std = train(_cfg(tmp_path, name="std", method="standard", epochs=6, eps=0.2), progress=False)
    fast = train(_cfg(tmp_path, name="fast", method="fast", epochs=6, eps=0.2), progress=False)
    assert fast.best["val_robust_acc"] > std.history[-1]["val_robust_acc"] + 0.15


def test_eps_warmup_is_linear(tmp_path):
    result = train(_cfg(tmp_path, eps=0.2, epochs=3, eps_warmup_epochs=2, limit=200), progress=False)
    eps = [r["eps"] for r in result.history]
    assert eps[0] == pytest.approx(0.1) and eps[1] == pytest.approx(0.2) and eps[2] == pytest.approx(0.2)


def test_existing_run_is_not_overwritten_silently(tmp_path):
    cfg = _cfg(tmp_path, epochs=1, limit=200)
    train(cfg, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, progress=False)


@pytest.mark.parametrize("change, match", [
    ({"method": "pgdd"}, "Unknown training method 'pgdd'. Did you mean 'pgd'"),
    ({"eps": -0.1}, "'eps' parameter of TrainConfig must be a number >= 0"),
    ({"method_args": {"lam": -1}}, "'method_args.lam' parameter"),
    ({"model": "resnet"}, "Unknown model 'resnet'"),
    ({"optimizer": "lbfgs"}, "'optimizer' parameter of TrainConfig must be one of"),
    ({"eps": "8/0"}, "'eps' parameter must be a number or a fraction"),
])
def test_bad_configuration_fails_before_training(tmp_path, change, match):
    with pytest.raises((ValueError, TypeError, KeyError), match=match):
        train(_cfg(tmp_path, **change) if "method" in change or "model" in change else TrainConfig(
            **{**_cfg(tmp_path).to_dict(), **change}), progress=False)
    assert not (tmp_path / "run" / "state.safetensors").exists()


def test_misspelt_and_unreadable_config_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: digits\nepoch: 3\n")
    with pytest.raises(ValueError, match="Unknown key 'epoch'.*Did you mean 'epochs'"):
        TrainConfig.from_yaml(p)
    p.write_text("data: [digits\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        TrainConfig.from_yaml(p)
    with pytest.raises(ValueError, match="Cannot read config file"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_model_data_mismatch_is_an_error(tmp_path, digits_model, digits):
    from robustkit.checkpoint import save_model
    from robustkit.models import create_model
    other = create_model("small-cnn", input_shape=(3, 8, 8), num_classes=5)
    save_model(tmp_path / "other.safetensors", other)
    with pytest.raises(ValueError, match="expects 3 input channel"):
        train(_cfg(tmp_path, init_from=str(tmp_path / "other.safetensors")), progress=False)


def _cli(*args, cwd):
    return [sys.executable, "-m", "robustkit", "train", *args]


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    args = ["--data", "digits", "--model", "small-cnn", "--method", "fast", "--eps", "0.2", "--epochs", "6",
            "--out-dir", str(tmp_path), "--set", "eval_size=100", "--set", "batch_size=32", "--seed", "3"]
    env = {**os.environ, "CI": "1"}
    ref = subprocess.run(_cli(*args, "--name", "ref", cwd=tmp_path), env=env, capture_output=True, text=True,
                         timeout=900)
    assert ref.returncode == 0, ref.stderr
    proc = subprocess.Popen(_cli(*args, "--name", "killed", cwd=tmp_path), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "state.safetensors"
    deadline = time.time() + 900
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # land somewhere inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_rows = read_metrics(tmp_path / "killed")
    assert len(killed_rows) < 6, "the run finished before it could be killed; make epochs longer"
    # Nothing half-written: every file parses.
    from robustkit.training.state import load_state
    load_model(tmp_path / "killed" / "last.safetensors")
    load_state(tmp_path / "killed" / "state.safetensors")
    yaml.safe_load((tmp_path / "killed" / "config.yaml").read_text())
    res = subprocess.run(_cli("--name", "killed", "--out-dir", str(tmp_path), "--resume", cwd=tmp_path), env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    a, b = read_metrics(tmp_path / "ref"), read_metrics(tmp_path / "killed")
    assert [r["epoch"] for r in b] == list(range(6))
    for ra, rb in zip(a, b):
        for key in ("train_loss", "val_clean_acc", "val_robust_acc"):
            assert ra[key] == pytest.approx(rb[key], abs=1e-6), (ra["epoch"], key)
    ma, _ = load_model(tmp_path / "ref" / "last.safetensors")
    mb, _ = load_model(tmp_path / "killed" / "last.safetensors")
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def _co_config(tmp_path, guard):
    """Built to trigger catastrophic overfitting: Fast-AT on MNIST at eps=0.3 with a step of 2*eps
    (Wong et al. report collapse for steps well above 1.25*eps), a high constant learning rate and
    a small subset."""
    from _helpers import data_root
    if data_root() is None:
        pytest.skip("MNIST not available ($ROBUSTKIT_DATA or ../shared/data)")
    return TrainConfig(name=f"co-{guard}", out_dir=str(tmp_path), data="mnist", data_dir=data_root(), limit=3000,
                       model="small-cnn", method="fast", method_args={"step_size": 0.6}, eps=0.3, epochs=3,
                       lr=0.05, optimizer="sgd", schedule="constant", batch_size=50, eval_size=300,
                       co_guard=guard)


def test_catastrophic_overfitting_guard_rolls_back_to_best(tmp_path):
    result = train(_co_config(tmp_path, "rollback"), progress=False)
    rows = read_metrics(result.run_dir)
    assert result.stopped_early and "Catastrophic overfitting" in result.stopped_early
    collapsed = rows[-1]
    assert collapsed.get("catastrophic_overfitting") is True
    assert collapsed["val_fgsm_acc"] - collapsed["val_robust_acc"] > 0.3
    assert result.best["val_robust_acc"] > 2 * collapsed["val_robust_acc"] * 0.99
    # The run ends with the best robust checkpoint, not the collapsed one.
    best, meta_best = load_model(result.run_dir / "best.safetensors")
    last, _ = load_model(result.run_dir / "last.safetensors")
    assert meta_best["extra"]["metrics"]["epoch"] == result.best["epoch"] < collapsed["epoch"]
    for pb, pl in zip(best.parameters(), last.parameters()):
        assert torch.equal(pb, pl)


def test_catastrophic_overfitting_guard_can_only_warn(tmp_path):
    result = train(_co_config(tmp_path, "warn"), progress=False)
    assert result.stopped_early is None and len(result.history) == 3
    assert any(r.get("catastrophic_overfitting") for r in result.history)
