"""Text models: the public names of the text side, kept at their old address.

The code lives where every modality's lives: data in :mod:`robustkit.data.text`, the transformer
classifier in :mod:`robustkit.models.text`, the word/character attacks in
:mod:`robustkit.attacks`, the text objectives in :mod:`robustkit.training.objectives`, and the
modality adapter in :mod:`robustkit.modality.text`. Needs the optional extra ``robustkit[text]``.
"""
from ..data.text import (TextDataError, TextDataset, available_text_datasets, encode_texts, is_text_dataset,
                         load_text_dataset, pad_batch, text_batches)

__all__ = ["TextDataError", "TextDataset", "available_text_datasets", "encode_texts", "is_text_dataset",
           "load_text_dataset", "pad_batch", "text_batches"]
