"""The parts of robustkit.serve on their own: keys file, rate limiter, micro-batcher, decoding, CLI checks,
the alert rules (promtool)."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustkit.cli import app as cli
from robustkit.serve.auth import KeyStore, add_key, list_keys, revoke_key
from robustkit.serve.batching import MicroBatcher
from robustkit.serve.decode import InputError, TextCodec, VisionCodec
from robustkit.serve.limits import RateLimiter
from robustkit.serve.server import ServerConfig, is_loopback

ROOT = Path(__file__).resolve().parents[2]


def test_keys_file_keeps_only_salted_hashes(tmp_path):
    f = tmp_path / "keys.json"
    k1, k2 = add_key(f, "alice"), add_key(f, "bob")
    text = f.read_text()
    assert k1 not in text and k1.split("_", 2)[2] not in text and k2.split("_", 2)[2] not in text
    entries = json.loads(text)["keys"]
    assert entries[0]["salt"] != entries[1]["salt"] and entries[0]["kdf"]["name"] == "scrypt"
    assert (f.stat().st_mode & 0o777) == 0o600
    assert [r["name"] for r in list_keys(f)] == ["alice", "bob"]
    store = KeyStore(f, reload_seconds=0)
    assert store.authenticate(k1) == "alice" and store.authenticate(k1) == "alice"  # cached path too
    assert store.authenticate(k2) == "bob"
    assert store.authenticate(k1[:-1] + ("A" if k1[-1] != "A" else "B")) is None
    assert store.authenticate("") is None and store.authenticate("rk_nope") is None
    with pytest.raises(ValueError, match="already exists"):
        add_key(f, "alice")
    with pytest.raises(ValueError, match="'name'"):
        add_key(f, "bad name!")
    revoke_key(f, "alice")
    time.sleep(0.01)
    assert store.authenticate(k1) is None and store.authenticate(k2) == "bob"
    with pytest.raises(ValueError, match="No key named 'alice'"):
        revoke_key(f, "alice")
    with pytest.raises(FileNotFoundError, match="keys add"):
        KeyStore(tmp_path / "missing.json")


def test_rate_limiter_bucket():
    lim = RateLimiter(2.0, 3)
    assert [lim.hit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = lim.hit("a")
    assert 0 < wait <= 0.5
    assert lim.hit("b") == 0.0  # buckets are per client
    assert lim.hit("c", rate=1.0, burst=1) == 0.0 and lim.hit("c", rate=1.0, burst=1) > 0.5
    assert RateLimiter(0).hit("a") == 0.0
    with pytest.raises(ValueError, match="'rate'"):
        RateLimiter(-1)


def test_micro_batcher_joins_concurrent_requests_and_keeps_order():
    seen = []

    def run(x):
        seen.append(x.shape[0])
        return x.sum(1, keepdim=True).repeat(1, 2), x[:, 0]
    from concurrent.futures import ThreadPoolExecutor
    ex = ThreadPoolExecutor(1)

    async def main():
        b = MicroBatcher(run, VisionCodec([3], (0, 10)), ex, max_batch=16, max_wait_ms=50)
        xs = [torch.full((2, 3), float(i)) for i in range(6)]
        outs = await asyncio.gather(*(b.submit(x) for x in xs))
        await b.stop()
        return xs, outs
    xs, outs = asyncio.run(main())
    for x, (logits, scores) in zip(xs, outs):
        assert torch.equal(logits[:, 0], x.sum(1)) and torch.equal(scores, x[:, 0])
    assert sum(seen) == 12 and max(seen) > 2  # requests shared model calls
    ex.shutdown()


def test_micro_batcher_respects_max_batch_and_reports_errors():
    sizes = []

    def run(x):
        sizes.append(x.shape[0])
        if (x < 0).any():
            raise RuntimeError("boom")
        return x, x[:, 0]
    from concurrent.futures import ThreadPoolExecutor
    ex = ThreadPoolExecutor(1)

    async def main():
        b = MicroBatcher(run, VisionCodec([1], (-1, 1)), ex, max_batch=3, max_wait_ms=20)
        await asyncio.gather(*(b.submit(torch.zeros(2, 1)) for _ in range(4)))
        with pytest.raises(RuntimeError, match="boom"):
            await b.submit(-torch.ones(1, 1))
        await b.stop()
    asyncio.run(main())
    assert max(sizes) <= 3
    ex.shutdown()


def test_codecs_refuse_bad_inputs_naming_the_field():
    v = VisionCodec([1, 2, 2], (0.0, 1.0))
    assert v.from_oip([1, 1, 2, 2], "FP32", [0.0, 0.5, 1.0, 0.25], "inputs[0]", 4).shape == (1, 1, 2, 2)
    assert v.from_oip([1, 1, 2, 2], "FP32", [[[[0, 0], [1, 1]]]], "inputs[0]", 4).shape == (1, 1, 2, 2)
    for args, field in [(([2, 1, 2, 2], "FP32", [0.0] * 4), "inputs[0].data"),
                        (([1, 1, 2, 2], "FP32", [True] * 4), "inputs[0].data"),
                        (([1, 1, 2, 2], "FP32", [0.0, [1.0], 0.0, 0.0]), "inputs[0].data"),
                        (([1, 1, 2, 2], "FP32", [float("nan")] * 4), "inputs[0].data"),
                        (([1, 1, 2, 2], "FP32", [2.0] * 4), "inputs[0].data"),
                        (([0, 1, 2, 2], "FP32", []), "inputs[0].shape"),
                        (([5, 1, 2, 2], "FP32", [0.0] * 20), "inputs[0].shape"),
                        (([1, 1, 2, 2], "INT8", [0] * 4), "inputs[0].datatype")]:
        with pytest.raises(InputError) as e:
            v.from_oip(*args, "inputs[0]", 4)
        assert e.value.field == field and e.value.status == 422
    t = TextCodec(max_text_chars=10)
    assert t.from_oip([2, 1], "BYTES", [["a b"], ["c"]], "inputs[0]", 4) == ["a b", "c"]
    with pytest.raises(InputError, match="limit of 10"):
        t.from_items(["x" * 11], "inputs")


def test_loopback_rule_and_config_errors(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.org")
    with pytest.raises(ValueError, match="loopback"):
        ServerConfig(["run"], host="0.0.0.0", no_auth=True).check()
    with pytest.raises(ValueError, match="API keys are required"):
        ServerConfig(["run"]).check()
    with pytest.raises(FileNotFoundError, match="keys add"):
        ServerConfig(["run"], api_keys_file=str(tmp_path / "none.json")).check()
    with pytest.raises(ValueError, match="'--name'"):
        ServerConfig(["a", "b"], no_auth=True, names=["x"]).check()


def test_cli_keys_and_serve_errors(tmp_path, runs):
    runner = CliRunner()
    f = tmp_path / "k.json"
    r = runner.invoke(cli, ["keys", "add", "ops", "--file", str(f)])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[0]
    assert key.startswith("rk_") and key not in f.read_text()
    r = runner.invoke(cli, ["keys", "list", "--file", str(f), "--json"])
    assert json.loads(r.stdout)[0]["name"] == "ops" and key not in r.stdout
    assert runner.invoke(cli, ["keys", "revoke", "nobody", "--file", str(f)]).exit_code == 2
    assert runner.invoke(cli, ["keys", "revoke", "ops", "--file", str(f)]).exit_code == 0
    r = runner.invoke(cli, ["serve", str(runs[0]), "--no-auth", "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "loopback" in r.output
    r = runner.invoke(cli, ["serve", str(runs[0])])
    assert r.exit_code == 2 and "--api-keys-file" in r.output
    r = runner.invoke(cli, ["serve", str(runs[0]), "--no-auth", "--suspicion", "nope"])
    assert r.exit_code == 2 and "suspicion" in r.output
    r = runner.invoke(cli, ["serve", str(runs[0]), "--no-auth", "--print-example"])
    assert r.exit_code == 0 and "curl" in r.output and "/v1/predict" in r.output


def test_two_worker_processes_serve(runs, tmp_path):
    """--workers 2: both processes answer on one port (each loads the model)."""
    import httpx

    from _serve_helpers import free_port, start_server, stop
    port = free_port()
    proc = start_server([str(runs[0]), "--no-auth", "--workers", "2", "--no-access-log"], tmp_path / "w.log", port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            codes = {c.post("/v1/predict", json={"inputs": [[[0.5] * 8] * 8]}).status_code for _ in range(20)}
        assert codes == {200}
    finally:
        stop(proc)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_alert_rules_pass_promtool():
    out = subprocess.run(["promtool", "check", "rules", str(ROOT / "deploy" / "alerts.yml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    tests = ROOT / "deploy" / "alerts_test.yml"
    if tests.is_file():
        out = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True, timeout=60,
                             cwd=tests.parent)
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_printed_example_commands_work(runs, tmp_path):
    """What `make demo` prints: the serve command and a curl line that gets a prediction."""
    import shlex

    from _serve_helpers import free_port, start_server, stop
    port = free_port()
    r = CliRunner().invoke(cli, ["serve", str(runs[0]), "--no-auth", "--port", str(port), "--print-example"])
    assert r.exit_code == 0, r.output
    serve_line = next(x for x in r.output.splitlines() if x.startswith("serve:")).split(":", 1)[1]
    curl_line = next(x for x in r.output.splitlines() if x.startswith("query:")).split(":", 1)[1]
    args = shlex.split(serve_line)
    proc = start_server(args[args.index("serve") + 1:], tmp_path / "demo.log", port)
    try:
        out = subprocess.run(["bash", "-c", curl_line], capture_output=True, text=True, timeout=60)
    finally:
        stop(proc)
    doc = json.loads(out.stdout)
    assert doc["predictions"][0]["class_name"] in [str(i) for i in range(10)]
