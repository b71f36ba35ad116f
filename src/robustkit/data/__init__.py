"""Datasets by name, returned as in-memory tensors in their natural input range."""
from .dataset import Dataset
from .idx import IDXFormatError, read_idx
from .loaders import available_datasets, load_dataset, register_dataset

__all__ = ["Dataset", "IDXFormatError", "read_idx", "available_datasets", "load_dataset", "register_dataset"]
