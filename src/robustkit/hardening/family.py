"""The ``hardened`` checkpoint family: how ``robustkit.checkpoint.load_model`` rebuilds a hardened model.

Spec::

    {"family": "hardened", "base": <the parent's model spec>, "shapes": {state key: shape} | None,
     "quantization": {"flow": "int8-static" | "int8-dynamic", "backend": "x86"} | None}

The builder rebuilds the parent architecture from ``base`` (a registry model or another family such
as ``text``), gives structurally pruned tensors their saved shapes, and for int8 re-applies the same
quantization flow (on a dummy calibration batch) so that the saved int8 weights, scales and zero
points load into it. Unstructured pruning alone keeps the parent's spec: its zeros are ordinary
weights. Registered lazily by :mod:`robustkit.checkpoint` (see ``_LAZY_FAMILIES`` there).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..checkpoint import build_from_spec, register_family

FAMILY = "hardened"


def build_base(spec: dict) -> nn.Module:
    """A float model from a model spec (registry name + arguments, or a family such as ``text``)."""
    if spec.get("family"):
        return build_from_spec(spec)
    from ..models import create_model
    return create_model(spec["name"], input_shape=spec["input_shape"], num_classes=spec["num_classes"],
                        mean=spec.get("mean"), std=spec.get("std"), **spec.get("kwargs", {}))


def hardened_spec(base: dict, *, shapes: dict | None = None, quantization: dict | None = None) -> dict:
    """The spec of a hardened model; a model only pruned without structure keeps its parent's spec."""
    if base.get("family") == FAMILY:  # hardening a hardened model: merge onto the root architecture
        shapes = {**(base.get("shapes") or {}), **(shapes or {})} or None
        if base.get("quantization"):
            raise ValueError("The model is already quantized; harden its float parent instead.")
        base = base["base"]
    if not shapes and not quantization:
        return copy.deepcopy(base)
    out = {"family": FAMILY, "base": copy.deepcopy(base), "shapes": shapes or None, "quantization": quantization}
    for key in ("name", "num_classes", "input_shape"):  # what model cards and data checks read
        if key in base:
            out[key] = base[key]
    return out


def float_model(spec: dict) -> nn.Module:
    """The float architecture of a (hardened) spec, weights uninitialized."""
    if spec.get("family") != FAMILY:
        return build_base(spec)
    model = build_base(spec["base"])
    if spec.get("shapes"):
        from .prune import resize_to
        resize_to(model, spec["shapes"])
    model.robustkit_spec = {k: v for k, v in spec.items() if k != "quantization"} if spec.get("shapes") else \
        copy.deepcopy(spec["base"])
    if spec.get("shapes"):
        model.robustkit_spec["quantization"] = None
    return model


def build_hardened(spec: dict) -> nn.Module:
    model = float_model(spec)
    q = spec.get("quantization")
    if q:
        from .quantize import quantization_skeleton
        example = None
        if q["flow"] != "int8-dynamic":
            example = torch.zeros(1, *spec["base"]["input_shape"])
        model = quantization_skeleton(model, q["flow"], example)
        model.set_twin_builder(lambda: float_model(spec))
    model.robustkit_spec = copy.deepcopy(spec)
    return model


register_family(FAMILY, build_hardened)
