"""Datasets by name, for every modality, returned in their natural input range.

One registry (:mod:`robustkit.data.registry`) holds image and text datasets with a modality tag.
"""
from .dataset import Dataset
from .idx import IDXFormatError, read_idx
from .registry import (available_datasets, dataset_info, dataset_modality, get_dataset_entry, load_dataset,
                       register_dataset, unregister_dataset)
from . import loaders as _vision_loaders  # noqa: F401,E402 - registers digits, mnist, fashion-mnist, ...
from . import text as _text_loaders  # noqa: F401,E402 - registers sst2, csv, tsv

__all__ = ["Dataset", "IDXFormatError", "read_idx", "available_datasets", "dataset_info", "dataset_modality",
           "get_dataset_entry", "load_dataset", "register_dataset", "unregister_dataset"]
