"""Resumable training state (optimizer, RNG, counters) in safetensors + JSON: no pickle anywhere."""
from __future__ import annotations

from typing import Any

import torch

from ..checkpoint import read_tensors, write_tensors


def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for pid, d in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(d)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_state(path, *, model_state: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
               info: dict[str, Any], rng_state: torch.Tensor) -> None:
    opt_tensors, opt_meta = flatten_optimizer(optimizer)
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    tensors.update(opt_tensors)
    tensors["rng.torch"] = rng_state
    write_tensors(path, tensors, {"kind": "train-state", "optimizer": opt_meta, "info": info})


def load_state(path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict, torch.Tensor]:
    tensors, meta = read_tensors(path)
    if meta.get("kind") != "train-state":
        raise ValueError(f"{path} is not a robustkit training-state file (kind {meta.get('kind')!r}).")
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    opt = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    return model_state, opt, meta, tensors["rng.torch"]
