"""Acceptance 1 and 6 against a real server on loopback: auth, limits, malformed input, rate limits, metrics,
the model card, the access log; after every refused request the service still answers its health check."""
from __future__ import annotations

import base64
import io
import json
import re
import struct
import time
import zlib

import httpx
import numpy as np
from PIL import Image

from robustkit.checkpoint import sha256_file
from robustkit.serve.auth import revoke_key


def png(arr: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return base64.b64encode(buf.getvalue()).decode()


def bomb_png(width: int, height: int) -> str:
    """A few dozen bytes whose header claims a width x height grayscale image (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


def refused(server, resp: httpx.Response, status: int, field: str | None = "any") -> dict:
    """The response is `status` with a JSON error naming `field`, no stack trace, and the service still answers."""
    assert resp.status_code == status, resp.text
    doc = resp.json()
    err = doc["error"]
    text = json.dumps(doc)
    assert "Traceback" not in text and 'File "' not in text
    if isinstance(err, dict):  # /v1 shape
        assert set(err) == {"field", "message"} and err["message"]
        got = err["field"]
    else:  # Open Inference Protocol shape: {"error": "<field>: <message>", "field": ...}
        got = doc.get("field")
        if got:
            assert err.startswith(got)
    if field != "any":
        assert got == field, doc
    assert server.alive()
    return doc


# -- authentication ---------------------------------------------------------------------------------------------------
def test_auth(server, digits):
    body = {"model": "digits", "inputs": [digits.x_test[0].tolist()]}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        refused(server, c.post("/v1/predict", json=body), 401, "Authorization")
        r = c.post("/v1/predict", json=body, headers={"Authorization": "Bearer rk_000000000000_" + "x" * 43})
        refused(server, r, 401, "Authorization")
        refused(server, c.post("/v1/predict", json=body, headers={"X-API-Key": "not-a-key"}), 401)
        assert c.get("/v2/models/digits").status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.get("/v2/health/ready").status_code == 200  # probes need no key
    with server.client("alice") as c:
        assert c.post("/v1/predict", json=body).status_code == 200
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-API-Key": server.keys["alice"]}) as c:
        assert c.post("/v1/predict", json=body).status_code == 200


def test_revoked_key_stops_working(server, digits):
    body = {"model": "digits", "inputs": [digits.x_test[0].tolist()]}
    with server.client("revokee") as c:
        assert c.post("/v1/predict", json=body).status_code == 200
        revoke_key(server.keys_file, "revokee")
        deadline = time.monotonic() + 10
        while c.post("/v1/predict", json=body).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        refused(server, c.post("/v1/predict", json=body), 401, "Authorization")


# -- limits -----------------------------------------------------------------------------------------------------------
def test_body_and_batch_limits(server, digits):
    with server.client() as c:
        big = {"model": "digits", "inputs": ["A" * 300_000]}
        refused(server, c.post("/v1/predict", json=big), 413, "body")
        # A streamed (chunked) body without Content-Length is counted as it arrives.
        chunks = (b'{"inputs": ["' + b"A" * 50_000 if i == 0 else b"A" * 50_000 for i in range(6))
        refused(server, c.post("/v1/predict", content=chunks, headers={"Content-Type": "application/json"}), 413,
                "body")
        nine = {"model": "digits", "inputs": [digits.x_test[0].tolist()] * 9}
        refused(server, c.post("/v1/predict", json=nine), 422, "inputs")
        x = digits.x_test[:9].numpy()
        oip = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
        refused(server, c.post("/v2/models/digits/infer", json=oip), 422, "inputs[0].shape")


def test_rate_limit_answers_429_with_retry_after(server, digits):
    body = {"model": "digits", "inputs": [digits.x_test[0].tolist()]}
    with server.client("limited") as c:
        codes = [c.post("/v1/predict", json=body) for _ in range(6)]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, [r.status_code for r in codes]
    assert int(limited[0].headers["Retry-After"]) >= 1
    refused(server, limited[0], 429, None)


# -- malformed requests -----------------------------------------------------------------------------------------------
def test_malformed_requests_are_4xx_naming_the_field(server, digits):
    x0 = digits.x_test[0]
    with server.client() as c:
        hdr = {"Content-Type": "application/json"}
        refused(server, c.post("/v1/predict", content=b'{"inputs": [', headers=hdr), 400, "body")
        refused(server, c.post("/v2/models/digits/infer", content=b"{oops", headers=hdr), 400, "body")
        refused(server, c.post("/v1/predict", json={"inputs": "not a list"}), 422, "inputs")
        refused(server, c.post("/v1/predict", json={"inputs": []}), 422, "inputs")
        refused(server, c.post("/v1/predict", json={"inputs": [x0.tolist()], "extra": 1}), 422, "extra")
        refused(server, c.post("/v1/predict", json={"model": "nope", "inputs": [x0.tolist()]}), 404, "model")
        refused(server, c.post("/v1/predict", json={"inputs": [x0.tolist()]}), 422, "model")  # 3 models served
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [[[0.5] * 7] * 8]}), 422, "inputs[0]")
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [(x0 * 3).tolist()]}), 422,
                "inputs[0]")
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [[["a"] * 8] * 8]}), 422, "inputs[0]")
        nan = b'{"model": "digits", "inputs": [[' + b",".join([b"[" + b",".join([b"NaN"] * 8) + b"]"] * 8) + b"]]}"
        refused(server, c.post("/v1/predict", content=nan, headers=hdr), 422, "inputs[0]")
        inf = nan.replace(b"NaN", b"Infinity")
        refused(server, c.post("/v1/predict", content=inf, headers=hdr), 422, "inputs[0]")
        refused(server, c.post("/v1/predict", json={"model": "text", "inputs": ["x" * 2001]}), 422, "inputs[0]")
        refused(server, c.post("/v1/predict", json={"model": "text", "inputs": ["   "]}), 422, "inputs[0]")
        refused(server, c.post("/v1/predict", json={"model": "text", "inputs": ["ok", "fine"],
                                                     "certify": {"sigma": 0.25, "n": 100}}), 422, "certify")
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [x0.tolist()],
                                                     "certify": {"sigma": -1, "n": 100}}), 422, "certify.sigma")
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [x0.tolist()],
                                                     "certify": {"sigma": 0.25, "n": 50_000}}), 422, "certify.n")
        refused(server, c.get("/v1/models/nope/card"), 404, "name")
        refused(server, c.get("/v2/models/nope"), 404, "name")
        refused(server, c.get("/v2/models/nope/ready"), 404, "name")
        refused(server, c.get("/no/such/path"), 404, None)
        # Open Inference Protocol tensors
        flat = x0.ravel().tolist()

        def infer(model="digits", **tensor):
            t = {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": flat, **tensor}
            return c.post(f"/v2/models/{model}/infer", json={"inputs": [t]})
        refused(server, infer(datatype="FP64"), 422, "inputs[0].datatype")
        refused(server, infer(shape=[1, 1, 8, 7]), 422, "inputs[0].shape")
        refused(server, infer(data=flat[:-1]), 422, "inputs[0].data")
        refused(server, infer(data=["a"] * 64), 422, "inputs[0].data")
        refused(server, infer(name="x"), 422, "inputs[0].name")
        refused(server, infer(shape="1,1,8,8"), 422, "inputs[0].shape")
        refused(server, infer(model="text", datatype="BYTES", shape=[1], data=[1.5]), 422, "inputs[0].data[0]")
        refused(server, c.post("/v2/models/digits/infer", json={"inputs": [{"name": "input", "shape": [1, 1, 8, 8],
                "datatype": "FP32", "data": flat}], "outputs": [{"name": "nope"}]}), 422, "outputs[0].name")
        refused(server, c.post("/v2/models/digits/infer", json={"inputs": []}), 422, "inputs")


def test_images_base64_png_jpeg_and_bad_images(server, digits, digits_model):
    import torch
    x = digits.x_test[:4]
    u8 = (x.numpy()[:, 0] * 255).round().astype(np.uint8)
    with server.client() as c:
        r = c.post("/v1/predict", json={"model": "digits", "inputs": [png(a) for a in u8]})
        assert r.status_code == 200, r.text
        with torch.no_grad():
            want = digits_model(torch.from_numpy(u8[:, None] / 255.0).float()).argmax(1).tolist()
        assert [p["label"] for p in r.json()["predictions"]] == want
        assert c.post("/v1/predict", json={"model": "digits", "inputs": [png(u8[0], "JPEG")]}).status_code == 200
        data_url = "data:image/png;base64," + png(u8[0])
        assert c.post("/v1/predict", json={"model": "digits", "inputs": [data_url]}).status_code == 200
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": ["%%%not base64%%%"]}), 422,
                "inputs[0]")
        junk = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20).decode()
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [junk]}), 422, "inputs[0]")
        gif = io.BytesIO()
        Image.new("L", (8, 8)).save(gif, "GIF")
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [base64.b64encode(gif.getvalue()).decode()]}),
                422, "inputs[0]")
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [png(np.zeros((16, 16), np.uint8))]}),
                422, "inputs[0]")
        # decompression bombs: over this server's --max-pixels (1e6), and over PIL's own guard
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [bomb_png(2000, 2000)]}), 413,
                "inputs[0]")
        refused(server, c.post("/v1/predict", json={"model": "digits", "inputs": [bomb_png(100_000, 100_000)]}),
                413, "inputs[0]")


def test_predict_fields_and_certify(server, digits):
    with server.client() as c:
        r = c.post("/v1/predict", json={"model": "digits", "inputs": [digits.x_test[0].tolist()],
                                        "certify": {"sigma": 0.25, "n": 200}})
        assert r.status_code == 200, r.text
        p = r.json()["predictions"][0]
        assert abs(sum(p["probabilities"]) - 1) < 1e-4 and 0 <= p["suspicion"] <= 1
        cert = p["certified"]
        assert cert["abstain"] == (cert["label"] == -1)
        assert cert["radius"] >= 0 and (cert["radius"] > 0) == (not cert["abstain"])
        r = c.post("/v1/predict", json={"model": "text", "inputs": ["the movie was good", "dull plot"]})
        assert r.status_code == 200 and {p["class_name"] for p in r.json()["predictions"]} <= {"negative", "positive"}


# -- the model card ---------------------------------------------------------------------------------------------------
def test_model_card_matches_checkpoint(server):
    from robustkit.checkpoint import load_model
    _, meta = load_model(server.vision_run / "best.safetensors")
    with server.client() as c:
        card = c.get("/v1/models/digits/card").json()
        text_card = c.get("/v1/models/text/card").json()
    assert card["checkpoint"]["sha256"] == sha256_file(server.vision_run / "best.safetensors") == meta["sha256"]
    assert card["architecture"] == meta["model"]["name"] == "small-cnn"
    assert card["data"]["input_shape"] == [1, 8, 8] and card["class_names"] == [str(i) for i in range(10)]
    assert card["training"] == {"method": "fast", "eps": 0.2, "norm": "linf", "args": {}}
    assert card["audit"]["clean_accuracy"] == {"value": 0.91, "ci95": [0.84, 0.96]}
    assert card["audit"]["robust_accuracy"]["ci95"] == [0.45, 0.65]
    assert card["audit"]["matches_served_checkpoint"] is True
    assert card["hardening"] == {"applied": ["prune"], "prune": {"amount": 0.3}}
    assert text_card["modality"] == "text" and text_card["class_names"] == ["negative", "positive"]
    assert text_card["audit"] is None and text_card["serving"]["input"] == {"datatype": "BYTES", "shape": [-1]}


# -- metrics count exactly what happened ------------------------------------------------------------------------------
def _sample(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_metrics_count_exactly(server, digits, digits_model):
    import torch
    x = digits.x_test[:5]
    with torch.no_grad():
        labels = digits_model(x).argmax(1).tolist()
    with server.client("counter") as c:
        assert c.post("/v1/predict", json={"model": "probe", "inputs": x[:2].tolist()}).status_code == 200
        oip = {"inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32", "data": x[2:].ravel().tolist()}]}
        assert c.post("/v2/models/probe/infer", json=oip).status_code == 200
        assert c.post("/v1/predict", json={"model": "probe", "inputs": [[[9.0] * 8] * 8]}).status_code == 422
        assert c.get("/v1/models/probe/card").status_code == 200
        text = c.get("/metrics").text
    assert _sample(text, "robustkit_requests_total", endpoint="/v1/predict", method="POST", status="200",
                   key="counter") == 1
    assert _sample(text, "robustkit_requests_total", endpoint="/v1/predict", method="POST", status="422",
                   key="counter") == 1
    assert _sample(text, "robustkit_requests_total", endpoint="/v2/models/{name}/infer", method="POST", status="200",
                   key="counter") == 1
    assert _sample(text, "robustkit_requests_total", endpoint="/v1/models/{name}/card", method="GET", status="200",
                   key="counter") == 1
    assert _sample(text, "robustkit_samples_total", model="probe") == 5
    assert _sample(text, "robustkit_suspicion_score_count", model="probe") == 5
    assert _sample(text, "robustkit_batch_size_sum", model="probe") == 5
    for k in set(labels):
        assert _sample(text, "robustkit_predictions_total", model="probe", label=str(k)) == labels.count(k)
    assert _sample(text, "robustkit_request_seconds_count", endpoint="/v1/predict") >= 2
    assert _sample(text, "robustkit_errors_total", kind="validation") >= 1
    assert server.alive()


def test_access_log_is_structured_without_payloads_or_keys(server):
    with server.client() as c:
        c.post("/v1/predict", json={"model": "text", "inputs": ["a secret sentence xyzzy"]})
    time.sleep(0.3)
    log = server.log.read_text()
    lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    assert lines and {"method", "endpoint", "status", "key", "ms"} <= set(lines[-1])
    assert any(r["key"] == "alice" and r["endpoint"] == "/v1/predict" for r in lines)
    assert "xyzzy" not in log
    for key in server.keys.values():
        assert key not in log and key.split("_", 2)[2] not in log
    assert "Traceback" not in log
    assert not re.search(r"rk_[0-9a-f]{12}_", log)


def test_binary_tensor_extension_refusals(server, digits):
    x = digits.x_test[:1].numpy().astype("<f4")
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 256}}]}).encode()
    with server.client() as c:
        ok = c.post("/v2/models/digits/infer", content=header + x.tobytes(),
                    headers={"Inference-Header-Content-Length": str(len(header))})
        assert ok.status_code == 200 and ok.json()["outputs"]
        refused(server, c.post("/v2/models/digits/infer", content=header + x.tobytes()[:-4],
                               headers={"Inference-Header-Content-Length": str(len(header))}), 422,
                "inputs[0].parameters.binary_data_size")
        refused(server, c.post("/v2/models/digits/infer", content=header + x.tobytes(),
                               headers={"Inference-Header-Content-Length": "999999"}), 400,
                "Inference-Header-Content-Length")
        nan = np.full((1, 1, 8, 8), np.nan, "<f4").tobytes()
        refused(server, c.post("/v2/models/digits/infer", content=header + nan,
                               headers={"Inference-Header-Content-Length": str(len(header))}), 422, "inputs[0].data")
