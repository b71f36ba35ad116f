"""Texts: lists of strings, transformer classifiers, two perturbation spaces.

Training perturbs token embeddings inside an Lp ball (:mod:`robustkit.modality.embedding`, a
ThreatModel without bounds, radius relative to the embedding scale); attacks and the audit
substitute words or characters under a :class:`~robustkit.threat.SubstitutionThreat` (eps = the
largest share of a text's words that may change).

A two-sentence input is one string ``text ||| text_pair`` (:data:`robustkit.data.text.PAIR_SEPARATOR`):
loaders build it from ``text_pair_column`` and the classifier's tokenization splits it again.
"""
from __future__ import annotations

import hashlib
from typing import ClassVar

import torch
from torch import nn

from ..threat import SubstitutionThreat, ThreatModel
from .base import Modality

#: model_args keys that configure the classifier; the rest of DATA_KEYS go to the dataset loader.
MODEL_KEYS = ("max_length", "freeze_layers", "head", "dropout", "lora", "new_head", "synonym_encoding", "rare_words")
DATA_KEYS = ("text_column", "text_pair_column", "label_column", "variant", "on_empty", "labels", "train_file",
             "test_file", "train_split", "test_split")


class TextModality(Modality):
    name = "text"
    continuous = False
    gallery_kind = "sentences"
    validation_attack = None
    # Word attacks first, each later one only on the sentences that survived (the cascade keeps the
    # per-sentence worst case). Measured against TextAttack's PWWS on SST-2 (BENCHMARKS.md, issue 16):
    # greedy search ranked by gradient saliency breaks most sentences at ~25 queries each; on the
    # survivors the 12 most salient words are re-ordered by the drop their best substitute really
    # achieves (PWWS's criterion, paid for 12 words instead of all), so the word budget goes to the
    # words that matter. Typos (char) are a separate threat, held to the same sentence similarity.
    presets: ClassVar[dict] = {
        "quick": [("word", {"importance": "gradient", "max_candidates": 50})],
        "standard": [("word", {"importance": "gradient", "max_candidates": 50}),
                     ("word", {"importance": "gradient", "rerank": 12, "max_candidates": 50}),
                     ("char", {"min_similarity": 0.8})],
        "thorough": [("word", {"importance": "gradient", "max_candidates": 50}),
                     ("word", {"importance": "gradient", "rerank": 12, "max_candidates": 50}),
                     ("word", {"importance": "gradient", "rerank": 12, "beam_width": 4, "max_candidates": 50}),
                     ("word", {"importance": "pwws", "beam_width": 8, "max_candidates": 50}),
                     ("word", {"candidates": "both", "max_candidates": 40, "beam_width": 4}),
                     ("char", {"max_candidates": 16, "min_similarity": 0.8})],
    }

    def data_options(self, model_args):
        unknown = set(model_args) - set(MODEL_KEYS) - set(DATA_KEYS)
        if unknown:
            raise ValueError(f"Unknown model_args key(s) {sorted(unknown)} for a text run. Accepted: "
                             f"{', '.join(MODEL_KEYS + DATA_KEYS)}.")
        model_kw = {k: v for k, v in model_args.items() if k in MODEL_KEYS}
        model_kw.setdefault("max_length", 64)
        return model_kw, {k: v for k, v in model_args.items() if k in DATA_KEYS}

    def eval_split(self, ds, limit=None):
        n = len(ds.test_texts) if limit is None else min(int(limit), len(ds.test_texts))
        return list(ds.test_texts[:n]), ds.test_labels[:n].long()

    def training_split(self, ds, cfg):
        # Validation is the evaluation split (SST-2: dev): its sentences are never trained on.
        n = min(cfg.eval_size, len(ds.test_texts))
        return ds.train_texts, ds.train_labels, list(ds.test_texts[:n]), ds.test_labels[:n]

    def build_model(self, cfg, ds, model_kwargs):
        from ..models.text import build_text_model
        kw = dict(model_kwargs)
        rare = kw.pop("rare_words", None)
        model = build_text_model(cfg.model, ds.num_classes, class_names=list(ds.class_names), **kw)
        if rare is not None and rare is not False:
            # The map is counted from this run's training texts, so it is built here (where they are) and
            # stored in the model's spec: evaluation, certification and serving read it from the checkpoint.
            from ..attacks.discrete import STOP_WORDS
            from ..data.synonyms import RareWordMap, synonym_candidates
            if rare is True:
                rare = 2
            if isinstance(rare, bool) or not isinstance(rare, int) or rare < 1:
                raise ValueError(f"The 'model_args.rare_words' option must be true or the least count (an integer "
                                 f">= 1) a training word needs to keep itself. Got {rare!r}.")
            words = RareWordMap.from_texts(ds.train_texts, synonym_candidates(stop_words=STOP_WORDS), rare)
            model.set_rare_word_map(words.to_spec())
        return model

    def match_labels(self, model, meta: dict, ds, ref: str, data_name: str) -> str | None:
        """Refuse data whose label set differs from the model's (the error names both); data with the model's
        labels in another order is re-mapped to the model's ids. Returns a note when it re-mapped.

        The model's labels are its Hugging Face head's ``id2label`` when they have real names, else the class
        names of the data it was trained on (a robustkit checkpoint's data spec)."""
        from ..models.text import check_label_sets, label_names
        bare = getattr(model, "body", model)  # a quantized wrapper forwards to its float body
        config = getattr(getattr(bare, "encoder", None), "config", None)
        classes = getattr(bare, "num_classes", None) or (meta.get("model") or {}).get("num_classes")
        if classes is None:
            return None
        names = label_names(getattr(config, "id2label", None), int(classes)) \
            if getattr(bare, "head_kind", None) == "sequence-classification" else None
        where = "its config.json id2label"
        spec = meta.get("data") or {}
        if names is None and spec.get("class_names"):
            names, where = [str(n) for n in spec["class_names"]], f"the data it was trained on ({spec.get('name')!r})"
        files = ", ".join(repr(f) for f in (ds.source or {}).get("files", [])[:2])
        column = (ds.source or {}).get("label_column")
        data_desc = (f"--data {data_name!r} ({files}{f', label column {column!r}' if column is not None else ''})")
        order = check_label_sets(names, int(classes), list(ds.class_names), ds.num_classes,
                                 model_desc=f"The model {ref!r} has a {int(classes)}-class head ({where})",
                                 data_desc=data_desc,
                                 hint="Evaluate it on data with its labels (--data-option labels=a,b,c sets the "
                                      "data's label order), or fine-tune it on this data first (robustkit train "
                                      "--model ... with --set model_args.new_head=true).")
        if order is None:
            return None
        ds.reorder_labels(order, names)
        return (f"the labels of --data {data_name!r} were re-mapped to the model's order {names} (the data lists "
                "them in another order)")

    def data_defaults(self, spec: dict) -> dict:
        """Loader options to reuse from a checkpoint's data spec when the same dataset is loaded again (the
        columns it was trained with: a pair model needs its text_pair_column again)."""
        return {k: spec[k] for k in ("text_column", "text_pair_column", "label_column") if spec.get(k) is not None}

    def training_threat(self, norm, eps, ds):
        return ThreatModel(norm, eps, None) if eps > 0 else None

    def audit_threat(self, eps, norm, saved, ds):
        if norm not in (None, "word-share"):
            raise ValueError(f"The 'norm' option does not apply to text models (their threat is the share of words "
                             f"an attack may change, set by --eps). Got {norm!r} instead.")
        return SubstitutionThreat(0.2 if eps is None else eps)

    def check_inputs(self, x, y, threat, owner):
        if isinstance(x, str) or not isinstance(x, (list, tuple)):
            raise TypeError(f"The 'x' parameter of {owner} must be a list of strings. Got {type(x).__name__} instead.")
        for i, t in enumerate(x):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"The 'x' parameter of {owner} must hold non-empty strings. Got {t!r} at index {i} "
                                 "instead.")
        if y is not None and (not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != len(x)):
            raise ValueError(f"The 'y' parameter of {owner} must be a tensor of shape ({len(x)},). Got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__} instead.")

    def training_batches(self, x, y, model, cfg, *, rank, world, with_raw):
        from ..data.text import text_batches
        if getattr(cfg, "augment", None):
            raise ValueError(f"The 'augment' parameter ({cfg.augment!r}) is an image augmentation; text data takes "
                             "none (for adversarial text augmentation use method: augment).")
        # A model with a word map (synonym encoding, rare words) trains on what it will see: the mapped words.
        x = model.prepare(list(x)) if hasattr(model, "prepare") else list(x)
        return text_batches(x, y, model.tokenizer, batch_size=cfg.batch_size, max_length=model.max_length,
                            seed=cfg.seed, with_texts=with_raw, rank=rank, world=world,
                            token_types=getattr(model, "uses_token_types", True))

    def chunk_inputs_to_file(self, x):
        return {}, {"x_adv": list(x)}

    def chunk_inputs_from_file(self, tensors, doc):
        return list(doc["x_adv"])

    def take(self, x, idx):
        return [x[i] for i in idx.tolist()]

    def put(self, dest, idx, src):
        for i, s in zip(idx.tolist(), src):
            dest[i] = s

    def copy(self, x):
        return list(x)

    @torch.no_grad()
    def logits(self, model: nn.Module, x, batch_size):
        out = [model(model.encode(list(x[i:i + batch_size]))).detach().float().cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, getattr(model, "num_classes", 2))

    def fingerprint(self, x, y):
        h = hashlib.sha256()
        for t in x:
            h.update(t.encode("utf-8") + b"\x00")
        h.update(str(y.tolist()).encode())
        return h.hexdigest()

    def example(self, x, x_adv, i):
        words, adv = x[i].split(), x_adv[i].split()
        changed = [k for k, (a, b) in enumerate(zip(words, adv)) if a != b] if len(words) == len(adv) else []
        return {"x": x[i], "x_adv": x_adv[i], "changed": changed}

    def describe_threat(self, threat):
        if isinstance(threat, SubstitutionThreat) or threat.to_dict().get("norm") == "word-share":
            return f"word/character substitutions, at most {threat.to_dict()['eps']:.0%} of the words"
        return super().describe_threat(threat)

    def save_examples(self, out, x, x_adv, y, pred_clean, pred_adv, class_names):
        import json

        from ..checkpoint import atomic_write_text
        rows = [{"label": int(t), "original": a, "adversarial": b, "pred_clean": int(pc), "pred_adv": int(pa)}
                for a, b, t, pc, pa in zip(x, x_adv, y.tolist(), pred_clean.tolist(), pred_adv.tolist())]
        atomic_write_text(out / "adversarial.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        return {"adversarial": str(out / "adversarial.jsonl")}
