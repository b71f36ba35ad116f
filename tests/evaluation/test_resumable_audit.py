"""Resumable audits (issue 12): kill -9 an audit (a real process), re-run the same command, get the same
per-sample results as an uninterrupted run; a changed model, data, eps or preset refuses to resume."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from robustkit import ThreatModel
from robustkit.checkpoint import save_model
from robustkit.cli import app
from robustkit.evaluation import evaluate
from robustkit.evaluation.resume import AuditState

from _helpers import ROOT

N, BATCH, QUERIES = 24, 2, 1000
ATTACK = ["--attack", "square", "--param", f"n_queries={QUERIES}"]


@pytest.fixture()
def ckpt(tmp_path, digits_model, digits):
    return save_model(tmp_path / "m" / "best.safetensors", digits_model, data=digits.spec(),
                      threat={"norm": "linf", "eps": 0.1})


SCRIPT = """
import json, sys
from robustkit import ThreatModel
from robustkit.checkpoint import load_model
from robustkit.data import load_dataset
from robustkit.evaluation import evaluate
model, _ = load_model(sys.argv[1])
ds = load_dataset("digits")
res = evaluate(model, ds.x_test[:{n}], ds.y_test[:{n}], ThreatModel("linf", 0.1, (0.0, 1.0)),
               attacks=[("square", {{"n_queries": {q}}})], batch_size={b}, seed=0, state_dir=sys.argv[2])
print(json.dumps(res.to_dict()))
""".format(n=N, q=QUERIES, b=BATCH)


def test_a_killed_audit_resumes_and_matches_an_uninterrupted_run(ckpt, tmp_path, digits_model, digits):
    # The audit command's evaluation (the hours-long part) in a real process: kill -9 it, run it again.
    state = tmp_path / "state"
    cmd = [sys.executable, "-c", SCRIPT, str(ckpt), str(state)]
    env = {**os.environ, "CI": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        t0 = time.monotonic()
        while len(list(state.glob("chunk-*.safetensors"))) < 3:
            assert proc.poll() is None, "the evaluation finished before it could be killed"
            assert time.monotonic() - t0 < 300, "no chunks were saved"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = len(list(state.glob("chunk-*.safetensors")))
    assert 3 <= saved < N // BATCH
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert any(n.startswith(f"Resumed: {saved} chunk(s)") for n in doc["notes"]), doc["notes"]
    assert not state.exists()  # a complete evaluation needs no state: the next run starts afresh
    x, y = digits.x_test[:N], digits.y_test[:N]
    whole = evaluate(digits_model, x, y, ThreatModel("linf", 0.1, (0.0, 1.0)),
                     attacks=[("square", {"n_queries": QUERIES})], batch_size=BATCH, seed=0).to_dict()
    for key in ("robust", "broken_by", "pred_adv"):
        assert doc["per_sample"][key] == whole["per_sample"][key], key


def test_a_changed_audit_refuses_the_saved_state_and_says_why(ckpt, tmp_path, digits_model, digits):
    out = tmp_path / "out"
    state = out / ".audit-state"
    x, y = digits.x_test[:N], digits.y_test[:N]
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    AuditState(state, {"model": "m", "data": "d", "threat": threat.to_dict()})  # an interrupted audit's manifest
    runner = CliRunner()
    res = runner.invoke(app, ["audit", str(ckpt), "--limit", str(N), "--out", str(out), "--eps", "0.2", *ATTACK])
    assert res.exit_code == 2
    assert "Cannot resume the audit" in res.output and "threat" in res.output and "--fresh" in res.output
    res = runner.invoke(app, ["audit", str(ckpt), "--limit", str(N), "--out", str(out), "--eps", "0.2", "--fresh",
                              "--batch-size", "24", *ATTACK])
    assert res.exit_code in (0, 1), res.output
    # In Python: a different model (weights) is named too.
    store = tmp_path / "py"
    evaluate(digits_model, x, y, threat, attacks=[("pgd", {"steps": 2})], state_dir=store, max_minutes=1e-9)
    other = copy.deepcopy(digits_model)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    with pytest.raises(ValueError, match="different model"):
        evaluate(other, x, y, threat, attacks=[("pgd", {"steps": 2})], state_dir=store)
