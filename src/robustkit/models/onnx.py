"""ONNX models as black boxes: an ``nn.Module`` that runs ``onnxruntime`` on the CPU.

The wrapper gives predictions, not gradients: it is marked ``robustkit_differentiable = False``, so
gradient (white-box) attacks refuse it with a clear message (:class:`robustkit.attacks.base.Attack`)
and the audit falls back to black-box attacks (Square) and transfer from a surrogate
(``--surrogate``). Loading needs the optional ``onnxruntime`` package (``robustkit[export]``).

Example::

    model = OnnxModel("model.onnx")            # inputs (N, C, H, W) in [0, 1], as exported
    x_adv = attacks.create("square", ThreatModel("linf", 0.1), n_queries=1000)(model, x, y)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointError, sha256_file

_NP_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class OnnxModel(nn.Module):
    """Runs an ONNX classifier (one input, logits as first output) with onnxruntime on the CPU.

    Args:
      path: the ``.onnx`` file.
      expect_sha256: refuse the file when its hash differs (a checkpoint that recorded it).
      threads: onnxruntime's intra-op threads (default: torch's thread count).
    """

    robustkit_differentiable = False

    def __init__(self, path: str | os.PathLike, *, expect_sha256: str | None = None, threads: int | None = None):
        super().__init__()
        from .foreign import import_optional
        ort = import_optional("onnxruntime", "An ONNX model")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file {str(path)!r} does not exist.")
        sha = sha256_file(path)
        if expect_sha256 is not None and sha != expect_sha256:
            raise CheckpointError(f"ONNX file {str(path)!r} changed since the checkpoint was saved (sha256 differs "
                                  f"from {expect_sha256[:12]}...). Load the file itself, or restore the original.")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(f"{str(path)!r} is not a loadable ONNX model ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}).") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"ONNX model {str(path)!r} has {len(inputs)} inputs ({[i.name for i in inputs]}); "
                             "robustkit attacks classifiers with exactly one input tensor.")
        self.input_name = inputs[0].name
        self.input_shape = list(inputs[0].shape)  # ints, or strings for dynamic axes
        self.input_dtype = _NP_TYPES.get(inputs[0].type)
        if self.input_dtype is None:
            raise ValueError(f"ONNX model {str(path)!r} takes {inputs[0].type} input; robustkit feeds float tensors.")
        self.fixed_batch = self.input_shape[0] if self.input_shape and isinstance(self.input_shape[0], int) else None
        self.path = str(path.resolve())
        self.robustkit_spec = {"family": "foreign", "loader": "onnx", "path": self.path, "sha256": sha,
                               "input_shape": self.input_shape}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"The input of the ONNX model must be a tensor. Got {type(x).__name__} instead.")
        arr = x.detach().cpu().numpy().astype(self.input_dtype, copy=False)
        step = self.fixed_batch or max(1, arr.shape[0])
        outs = []
        for i in range(0, arr.shape[0], step):
            chunk = arr[i:i + step]
            n = chunk.shape[0]
            if self.fixed_batch and n < self.fixed_batch:  # a model exported for a fixed batch: pad the last chunk
                chunk = np.concatenate([chunk, np.zeros((self.fixed_batch - n, *chunk.shape[1:]), chunk.dtype)])
            try:
                outs.append(self.session.run(None, {self.input_name: np.ascontiguousarray(chunk)})[0][:n])
            except Exception as err:  # noqa: BLE001 - onnxruntime's InvalidArgument and friends
                raise ValueError(f"The ONNX model {self.path!r} refused an input of shape {tuple(chunk.shape)} "
                                 f"(it expects {self.input_shape}): {str(err).splitlines()[0]}") from None
        out = np.concatenate(outs) if outs else np.zeros((0, 0), dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"path={self.path!r}, input={self.input_name}{self.input_shape}"
