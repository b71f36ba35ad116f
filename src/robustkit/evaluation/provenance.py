"""Provenance: enough about the run to reproduce its numbers (versions, commit, hashes, device)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from ..modality.base import sha256_tensors  # noqa: F401 - re-exported (benchmarks use it)

PACKAGES = ("robustkit", "torch", "numpy", "safetensors", "scipy", "matplotlib", "torchattacks")


def package_versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(start: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding this package (or ``start``), if any; never raises."""
    here = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_info(device: torch.device | str | None = None) -> dict:
    device = torch.device(device or "cpu")
    info = {"device": str(device), "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count()}
    if device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def environment(device=None) -> dict:
    return {"versions": package_versions(), "git_commit": git_commit(), "device": device_info(device),
            "argv": list(sys.argv)}
