"""Any Hugging Face sequence-classification model as a robustkit text classifier.

``load_hf_classifier(folder_or_hub_id)`` loads ``AutoModelForSequenceClassification`` and its
(fast) tokenizer with ``local_files_only=True`` unless ``allow_download`` is set, and wraps them in
:class:`robustkit.models.text.TextClassifier` (``head="sequence-classification"``): the text modality
then calls it like robustkit's own classifiers (``encode`` texts, ``forward`` token batches,
``embed``/``forward_embeds`` for embedding-space attacks), and ``save_model`` stores it as a normal
``text`` checkpoint (config, tokenizer and weights in safetensors).
"""
from __future__ import annotations

from pathlib import Path

from .text import ModelFolderError, TextClassifier, _finish, check_tokenizer_files


def load_hf_classifier(source: str, *, allow_download: bool = False, max_length: int | None = None
                       ) -> TextClassifier:
    """A local folder or hub id -> TextClassifier in eval mode (num_classes from the model's config)."""
    from .foreign import import_optional
    transformers = import_optional("transformers", f"The Hugging Face model {source!r}")
    local = not allow_download
    is_dir = Path(source).is_dir()
    hint = "" if is_dir or allow_download else (" It is not a local folder and not in the local Hugging Face cache; "
                                                "pass --allow-download to fetch it from the hub.")
    if is_dir:
        check_tokenizer_files(source)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError, TypeError) as err:
        raise ModelFolderError(f"Cannot load a tokenizer for the Hugging Face model {source!r}: "
                               f"{str(err).splitlines()[0]}.{hint}") from None
    if not getattr(tok, "is_fast", False):
        raise ModelFolderError(f"The tokenizer of {source!r} is not a fast (Rust) tokenizer; robustkit needs one "
                               "for word alignment. Save a tokenizer.json with the model "
                               "(tokenizer.save_pretrained(folder) with a fast tokenizer).")
    from .text import quiet_transformers
    try:
        with quiet_transformers():
            enc, info = transformers.AutoModelForSequenceClassification.from_pretrained(
                source, local_files_only=local, output_loading_info=True)
    except (OSError, ValueError, TypeError) as err:
        raise ModelFolderError(f"Cannot load a sequence-classification model from {source!r}: "
                               f"{str(err).splitlines()[0]}.{hint}") from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        # transformers fills missing weights with random ones: an encoder-only folder would "classify" at chance.
        prefix = f"{getattr(enc, 'base_model_prefix', '')}."
        head = [k for k in missing if not k.startswith(prefix)]
        arch = list(getattr(enc.config, "architectures", None) or [])
        what = (f"holds no classification head (its weights lack {', '.join(head[:4])}; config.json "
                f"architectures {arch}): it is an encoder only" if head else
                f"lacks weights {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}, which would be random")
        raise ModelFolderError(f"The Hugging Face model {source!r} {what}. Expected a model saved from "
                               "AutoModelForSequenceClassification after fine-tuning. Train a head first: robustkit "
                               f"train --model {source} --data ... (then attack/audit/certify the run folder), or "
                               "pass a fine-tuned classification model.")
    num_labels = int(getattr(enc.config, "num_labels", 0) or 0)
    if num_labels < 2:
        raise ModelFolderError(f"The Hugging Face model {source!r} has {num_labels} label(s) (config.num_labels); "
                               "robustkit audits classifiers with at least two classes.")
    limit = min(int(getattr(tok, "model_max_length", 512) or 512),
                int(getattr(enc.config, "max_position_embeddings", 512) or 512), 512)
    max_length = limit if max_length is None else min(int(max_length), limit)
    if max_length < 4:
        raise ModelFolderError(f"The Hugging Face model {source!r} takes at most {max_length} tokens; too few.")
    model = _finish(enc, tok, name=str(source), num_classes=num_labels, head="sequence-classification",
                    dropout=0.0, max_length=max_length)
    return model.eval()
