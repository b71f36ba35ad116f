"""Which device a command runs on (``--device``), checked before any work, and its mixed precision."""
from __future__ import annotations

import os
import re

import torch

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` -> a torch.device.

    A device this machine lacks is an error now, not a crash in the middle of the run.
    """
    if isinstance(name, torch.device):
        return name
    name = "auto" if name is None else str(name).strip().lower()
    if not _DEVICE.match(name):
        raise ValueError(f"The 'device' parameter must be one of auto, cpu, cuda, cuda:N, mps. Got {name!r} instead.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"The 'device' parameter is {name!r} but this torch build sees no CUDA GPU "
                             f"(torch {torch.__version__}). Use --device cpu (or auto).")
        index = int(name.split(":")[1]) if ":" in name else int(os.environ.get("LOCAL_RANK", 0))
        if index >= torch.cuda.device_count():
            raise ValueError(f"The 'device' parameter is {name!r} but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1}).")
        return torch.device("cuda", index)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("The 'device' parameter is 'mps' but Apple's Metal backend is not available here. "
                         "Use --device cpu (or auto).")
    return torch.device(name)


def amp_precision(device: str | torch.device | None) -> str:
    """The autocast dtype ``--amp`` means on this device: fp16 on CUDA (with a grad scaler), bf16 elsewhere."""
    return "fp16" if resolve_device(device).type == "cuda" else "bf16"


def autocast(device: torch.device, enabled: bool):
    """``torch.autocast`` for evaluation forwards under ``--amp`` (a no-op context when disabled)."""
    import contextlib
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


class AutocastModel(torch.nn.Module):
    """``--amp`` for evaluation: the model's forward under autocast, logits handed back in float32.

    Attacks then take their gradients through the low-precision forward: faster on a GPU, but a
    slightly different (possibly weaker) attack; reports record that amp was on. Attributes the
    wrapped model has (tokenizer, max_length, robustkit_spec, ...) stay reachable through the wrapper.
    """

    def __init__(self, inner: torch.nn.Module, device: torch.device):
        super().__init__()
        self.inner = inner
        self.amp_device = device

    def forward(self, *args, **kwargs):
        with autocast(self.amp_device, True):
            out = self.inner(*args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) else out

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)
