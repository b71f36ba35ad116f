"""ONNX export of a vision or text checkpoint, checked against ONNX Runtime on a batch.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer). On torch 2.13 it exports
every robustkit model (Normalize + conv nets, BERT-style encoders with attention masks) offline, with
dynamic batch (and sequence) axes, in seconds; its tracer *warns* when a forward pass branches on
tensor values, and robustkit turns that warning into an error (a traced graph would silently keep one
branch). The dynamo exporter (``dynamo=True``) is slower, needs onnxscript, and produced no better
graphs for these models. ONNX and onnxruntime are optional (``pip install 'robustkit[export]'``).

The exported file is run by :class:`robustkit.models.onnx.OnnxModel` (vision), which is marked
non-differentiable: its audit transfers attacks from the PyTorch model (its float twin) plus Square.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

SAMPLE_SENTENCES = ["a gripping , beautifully acted film .", "the plot is dull and the jokes fall flat .",
                    "not bad at all", "one of the worst movies of the year", "funny , warm and wise",
                    "i wanted to like it , but i could not .", "an instant classic", "boring"]


def _optional(name: str):
    try:
        return __import__(name)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"ONNX export needs the {name} package (pip install 'robustkit[export]').") from None


class _TextLogits(nn.Module):
    """(input_ids, attention_mask) -> logits: a text classifier with tensor inputs for the exporter."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model({"input_ids": input_ids, "attention_mask": attention_mask})


def export_inputs(model, modality, batch: int = 8, seed: int = 0, texts: list[str] | None = None) -> dict:
    """A named input batch for the exporter/check: images uniform in [0, 1], texts tokenized sentences."""
    if modality.continuous:
        shape = (model.robustkit_spec or {}).get("input_shape")
        if not shape:
            raise ValueError("The checkpoint records no input_shape; cannot build an export batch.")
        g = torch.Generator().manual_seed(seed)
        return {"input": torch.rand(batch, *shape, generator=g)}
    enc = model.encode((texts or SAMPLE_SENTENCES)[:batch])
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def export_onnx(model: nn.Module, inputs: dict[str, torch.Tensor], path, *, opset: int = 17,
                check_inputs: dict[str, torch.Tensor] | None = None) -> dict:
    """Export ``model`` to ONNX at ``path`` and compare ONNX Runtime's logits with PyTorch's.

    ``inputs``: {"input": images} or {"input_ids": ..., "attention_mask": ...}; ``check_inputs`` (default:
    ``inputs``) is the batch compared. Returns {"path", "max_abs_logit_diff", "batch", "opset", "exporter"}.
    """
    onnx = _optional("onnx")
    ort = _optional("onnxruntime")
    if getattr(model, "robustkit_differentiable", True) is False:
        raise ValueError(f"The model ({type(model).__name__}) is quantized or already an ONNX/black-box model; "
                         "export its float parent instead (int8 eager modules have no ONNX export in torch).")
    path = Path(path)
    text = set(inputs) == {"input_ids", "attention_mask"}
    net = _TextLogits(model) if text else model
    names = list(inputs)
    axes = {n: ({0: "batch", 1: "sequence"} if text else {0: "batch"}) for n in names}
    axes["logits"] = {0: "batch"}
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.no_grad():
                torch.onnx.export(net, tuple(inputs[n] for n in names), tmp, input_names=names,
                                  output_names=["logits"], dynamic_axes=axes, opset_version=opset, dynamo=False)
        # transformers' own modelling code branches on tensor *shapes* (padding checks), which is safe with
        # dynamic axes and is checked below on a batch of another size and length; anything else is refused.
        flow = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)
                and f"{os.sep}transformers{os.sep}" not in str(w.filename)
                and any(s in str(w.message) for s in ("Python boolean", "Python number", "Python index",
                                                      "might cause the trace to be incorrect"))]
        if flow:
            raise ValueError("The model has dynamic control flow (its forward pass branches on tensor values), "
                             "which ONNX export would freeze to the branch taken on the example batch: "
                             f"{str(flow[0].message).splitlines()[0]} ({Path(flow[0].filename).name}:"
                             f"{flow[0].lineno}). Rewrite the branch with tensor operations (torch.where) to export.")
        onnx.checker.check_model(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    check = check_inputs or inputs
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: check[n].numpy() for n in names})[0]
    with torch.no_grad():
        want = net(*(check[n] for n in names)).float().numpy()
    diff = float(np.abs(got - want).max())
    doc = {"path": str(path), "max_abs_logit_diff": diff, "batch": int(next(iter(check.values())).shape[0]),
           "opset": opset, "exporter": "torch.onnx.export(dynamo=False)", "inputs": names,
           "onnxruntime": ort.__version__, "bytes": path.stat().st_size}
    word_map = _word_map_doc(model) if text else None
    if word_map is not None:
        doc["word_map"] = word_map
    return doc


def _word_map_doc(model) -> dict | None:
    """The word map a text model applies before tokenizing (a defence: synonym encoding, rare words). The ONNX
    graph starts at token ids, so without it a caller would silently serve the undefended model: the export
    document carries it (the rare-word map whole, as JSON) and says where it goes."""
    spec = getattr(model, "robustkit_spec", None) or {}
    if getattr(model, "word_map", None) is None:
        return None
    how = ("replace each whitespace-separated word before tokenizing, as robustkit's TextClassifier.prepare does; "
           "the ONNX graph takes token ids and does not apply it")
    if spec.get("rare_words"):
        return {"kind": "rare_words", "spec": spec["rare_words"], "apply": how}
    return {"kind": "synonym_encoding", "spec": {"synonym_encoding": True}, "apply": how}
