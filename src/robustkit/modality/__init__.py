"""The only place that knows images from text: the modality adapters and how to pick one.

``for_dataset(name)`` follows the dataset registry's modality tag, ``for_checkpoint(meta)`` the
checkpoint's data spec, ``for_inputs(x)`` the type of an input batch; ``get_modality(name)`` and
``register_modality`` are the registry itself.
"""
from __future__ import annotations

from .._validation import unknown_name_error
from .base import Modality, sha256_tensors
from .text import TextModality
from .vision import VisionModality

_MODALITIES: dict[str, Modality] = {}


def register_modality(adapter: Modality) -> Modality:
    _MODALITIES[adapter.name] = adapter
    return adapter


register_modality(VisionModality())
register_modality(TextModality())


def get_modality(name: str) -> Modality:
    if name not in _MODALITIES:
        raise ValueError(unknown_name_error("modality", name, _MODALITIES).args[0])
    return _MODALITIES[name]


def available_modalities() -> list[str]:
    return sorted(_MODALITIES)


def for_dataset(name: str) -> Modality:
    from ..data import dataset_modality
    return get_modality(dataset_modality(name))


def for_checkpoint(meta: dict) -> Modality:
    """The modality of a loaded checkpoint (its data spec's tag; older text checkpoints say kind=text)."""
    data = meta.get("data") or {}
    model = meta.get("model") or {}
    name = data.get("modality") or ("text" if data.get("kind") == "text" or model.get("family") == "text"
                                    else "vision")
    return get_modality(name)


def for_inputs(x) -> Modality:
    """The modality of an input batch: a tensor is vision, a list of strings is text."""
    if isinstance(x, (list, tuple)) and all(isinstance(t, str) for t in x):
        return get_modality("text")
    return get_modality("vision")


__all__ = ["Modality", "TextModality", "VisionModality", "available_modalities", "for_checkpoint", "for_dataset",
           "for_inputs", "get_modality", "register_modality", "sha256_tensors"]
