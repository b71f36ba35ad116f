"""A real `robustkit serve` on loopback, started once per module: a tiny digits CNN, a tiny BERT text model
and the digits model again under the name "probe" (only the metrics test touches it, so its counts are exact)."""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from robustkit.checkpoint import save_model, sha256_file
from robustkit.serve.auth import add_key

from _serve_helpers import free_port, start_server, stop  # noqa: E402
from _text_fixtures import make_tiny_model  # noqa: E402


def write_vision_run(folder: Path, model, ds) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = save_model(folder / "best.safetensors", model, data=ds.spec(),
                      threat={"norm": "linf", "eps": 0.2, "bounds": [0.0, 1.0]},
                      method={"name": "fast", "args": {}, "objective": {"step_size": 0.25}})
    # The last audit, as `robustkit audit` leaves it in the run folder (only the fields the card reads).
    audit = {"format": "robustkit-audit", "created": "2026-11-30T12:00:00+00:00", "preset": "quick",
             "threat": {"norm": "linf", "eps": 0.2, "bounds": [0.0, 1.0]},
             "evaluation": {"n": 100, "clean_accuracy": {"value": 0.91, "ci95": [0.84, 0.96]},
                            "robust_accuracy": {"value": 0.55, "ci95": [0.45, 0.65]}},
             "verdict": {"status": "pass"}, "provenance": {"checkpoint": {"sha256": sha256_file(path)}}}
    (folder / "audit.json").write_text(json.dumps(audit))
    (folder / "harden.json").write_text(json.dumps({"applied": ["prune"], "prune": {"amount": 0.3}}))
    return folder


def write_text_run(folder: Path) -> Path:
    model = make_tiny_model(folder / "tok")
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder / "best.safetensors", model,
               data={"name": "sst2", "modality": "text", "kind": "text", "num_classes": 2,
                     "class_names": ["negative", "positive"]},
               threat={"norm": "l2", "eps": 0.5, "bounds": None}, method={"name": "freelb", "args": {}})
    return folder


@dataclass
class Server:
    url: str
    keys: dict
    keys_file: Path
    log: Path
    vision_run: Path
    text_run: Path
    proc: subprocess.Popen

    def client(self, key: str | None = "alice", **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def alive(self) -> bool:
        r = httpx.get(self.url + "/v2/health/live", timeout=10)
        return r.status_code == 200 and r.json() == {"live": True}


@pytest.fixture(scope="session")
def runs(tmp_path_factory, digits, digits_model):
    root = tmp_path_factory.mktemp("serve-runs")
    return write_vision_run(root / "digits-run", digits_model, digits), write_text_run(root / "text-run")


@pytest.fixture(scope="session")
def server(runs, tmp_path_factory):
    vision_run, text_run = runs
    root = tmp_path_factory.mktemp("serve")
    keys_file = root / "keys.json"
    keys = {name: add_key(keys_file, name) for name in ("alice", "counter", "revokee", "fuzz")}
    keys["limited"] = add_key(keys_file, "limited", rate_limit=1.0, burst=3)
    port = free_port()
    log = root / "server.log"
    proc = start_server([str(vision_run), str(text_run), str(vision_run), "--name", "digits", "--name", "text",
                         "--name", "probe", "--api-keys-file", str(keys_file), "--max-body-bytes", "200000",
                         "--max-request-batch", "8", "--max-pixels", "1000000", "--rate-limit", "1000",
                         "--burst", "1000", "--max-wait-ms", "5"], log, port)
    yield Server(f"http://127.0.0.1:{port}", keys, keys_file, log, vision_run, text_run, proc)
    stop(proc)
