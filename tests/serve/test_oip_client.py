"""Acceptance 2: an unmodified Open Inference Protocol client (NVIDIA's tritonclient) against the real server
gets the same predictions as calling the model in Python."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from robustkit.checkpoint import load_model
from robustkit.modality import for_checkpoint

th = pytest.importorskip("tritonclient.http")


@pytest.fixture()
def client(server):
    c = th.InferenceServerClient(server.url.removeprefix("http://"), connection_timeout=30, network_timeout=30)
    yield c
    c.close()


def _infer(client, server, model, x, datatype):
    inp = th.InferInput("input", list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=False)
    outs = [th.InferRequestedOutput(n, binary_data=False) for n in ("logits", "label")]
    return client.infer(model, [inp], outputs=outs, headers={"Authorization": f"Bearer {server.keys['alice']}"})


def test_tritonclient_metadata_and_health(server, client):
    headers = {"Authorization": f"Bearer {server.keys['alice']}"}
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("text")
    meta = client.get_model_metadata("digits", headers=headers)
    assert meta["platform"] == "pytorch"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert {"name": "logits", "datatype": "FP32", "shape": [-1, 10]} in meta["outputs"]
    assert client.get_model_metadata("text", headers=headers)["inputs"][0]["datatype"] == "BYTES"
    assert client.get_server_metadata(headers=headers)["name"] == "robustkit"


def test_tritonclient_predictions_equal_python(server, client, digits):
    model, meta = load_model(server.vision_run / "best.safetensors")
    x = digits.x_test[:64].numpy().astype(np.float32)
    with torch.inference_mode():
        want_logits = model(torch.from_numpy(x))
    want = want_logits.argmax(1).numpy()
    for lo in range(0, 64, 8):  # the server's --max-request-batch is 8
        res = _infer(client, server, "digits", x[lo:lo + 8], "FP32")
        np.testing.assert_array_equal(res.as_numpy("label"), want[lo:lo + 8])
        np.testing.assert_array_equal(res.as_numpy("logits").argmax(1), want[lo:lo + 8])
        np.testing.assert_allclose(res.as_numpy("logits"), want_logits[lo:lo + 8].numpy(), rtol=1e-4, atol=1e-4)


def test_tritonclient_text_predictions_equal_python(server, client):
    model, meta = load_model(server.text_run / "best.safetensors")
    texts = ["the movie was good", "the plot was awful and dull", "a wonderful cast", "boring script",
             "the acting was not very nice"]
    want = for_checkpoint(meta).logits(model, texts, 8).argmax(1).numpy()
    res = _infer(client, server, "text", np.array(texts, dtype=object), "BYTES")
    np.testing.assert_array_equal(res.as_numpy("label"), want)


def test_tritonclient_sees_errors_as_errors(server, client):
    from tritonclient.utils import InferenceServerException
    with pytest.raises(InferenceServerException, match="datatype"):
        _infer(client, server, "digits", np.zeros((1, 1, 8, 8), np.float64), "FP64")
    assert server.alive()


def test_tritonclient_defaults_binary_tensors(server, client, digits):
    """tritonclient's defaults send and ask for binary tensors (the protocol's binary tensor extension)."""
    model, meta = load_model(server.vision_run / "best.safetensors")
    x = digits.x_test[:8].numpy().astype(np.float32)
    with torch.inference_mode():
        want_logits = model(torch.from_numpy(x)).numpy()
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)  # binary_data=True by default
    headers = {"Authorization": f"Bearer {server.keys['alice']}"}
    res = client.infer("digits", [inp], headers=headers)  # no outputs named: all, binary
    np.testing.assert_array_equal(res.as_numpy("label"), want_logits.argmax(1))
    np.testing.assert_allclose(res.as_numpy("logits"), want_logits, rtol=1e-4, atol=1e-4)
    res = client.infer("digits", [inp], outputs=[th.InferRequestedOutput("label")], headers=headers)
    np.testing.assert_array_equal(res.as_numpy("label"), want_logits.argmax(1))
    text_model, text_meta = load_model(server.text_run / "best.safetensors")
    texts = ["the movie was good", "dull plot", "ünïcödé fine"]
    t = th.InferInput("input", [3], "BYTES")
    t.set_data_from_numpy(np.array(texts, dtype=object))
    res = client.infer("text", [t], headers=headers)
    np.testing.assert_array_equal(res.as_numpy("label"), for_checkpoint(text_meta).logits(text_model, texts, 8)
                                  .argmax(1).numpy())
    assert server.alive()
