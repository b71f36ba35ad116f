"""One registry of datasets for every modality: name -> loader, description and modality tag.

A loader is ``fn(*, data_dir=None, seed=0, **options) -> dataset`` where the dataset is a
:class:`~robustkit.data.Dataset` (images) or a :class:`~robustkit.data.text.TextDataset` (texts);
both know how to keep a subset of themselves (``limit``), so loading needs no modality branch.

Adding a dataset is one function and one decorator::

    @register_dataset("my-data", "what it is", modality="vision")
    def _load(*, data_dir=None, seed=0):
        return Dataset(...)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from .._validation import check_number, unknown_name_error

MODALITIES = ("vision", "text")


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    loader: Callable[..., Any]
    description: str
    modality: str


_DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str = "", *, modality: str = "vision"):
    """Register a loader under ``name``; ``modality`` says which adapter serves it ("vision" | "text")."""
    if modality not in MODALITIES:
        raise ValueError(f"The 'modality' parameter of register_dataset must be one of {list(MODALITIES)}. "
                         f"Got {modality!r} instead.")

    def decorate(fn):
        if name in _DATASETS and _DATASETS[name].loader is not fn:
            raise ValueError(f"dataset name {name!r} is already registered")
        _DATASETS[name] = DatasetEntry(name, fn, description, modality)
        return fn
    return decorate


def unregister_dataset(name: str) -> None:
    """Remove a dataset (tests register toy ones and take them out again)."""
    _DATASETS.pop(name, None)


def get_dataset_entry(name: str) -> DatasetEntry:
    if not isinstance(name, str) or name not in _DATASETS:
        raise ValueError(unknown_name_error("dataset", name, _DATASETS).args[0])
    return _DATASETS[name]


def dataset_modality(name: str) -> str:
    """The modality tag of a registered dataset ("vision" or "text")."""
    return get_dataset_entry(name).modality


def available_datasets(modality: str | None = None) -> dict[str, str]:
    """{name: description}, optionally only the datasets of one modality."""
    return {k: e.description for k, e in sorted(_DATASETS.items()) if modality in (None, e.modality)}


def dataset_info() -> dict[str, dict]:
    """{name: {"modality", "description"}} for ``robustkit list``."""
    return {k: {"modality": e.modality, "description": e.description} for k, e in sorted(_DATASETS.items())}


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None, limit: int | None = None,
                 seed: int = 0, **options):
    """Load a registered dataset by name.

    ``limit`` keeps N samples of each split (images: the first N; texts: a seeded random N of the
    training split and the first N of the evaluation split). ``options`` go to the loader (text
    datasets: ``text_column``, ``label_column``, ``variant``, ``on_empty``, ...).
    """
    entry = get_dataset_entry(name)
    if limit is not None:
        limit = check_number(limit, "limit", owner="load_dataset", low=1, integer=True)
    ds = entry.loader(data_dir=data_dir, seed=seed, **options)
    return ds.limited(limit, seed) if limit is not None else ds
