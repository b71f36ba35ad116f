"""A model as the service holds it: weights in eval mode, its modality's adapter and codec, its card."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._validation import check_choice, check_number
from .suspicion import SIGNALS, noisy_copies, scores_from_logits

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class SuspicionConfig:
    """Which signal the service reports per sample (see robustkit.serve.suspicion and BENCHMARKS.md)."""

    signal: str = "max_softmax"
    sigma: float = 0.1
    k: int = 8
    threshold: float = 0.5

    def __post_init__(self):
        check_choice(self.signal, "suspicion", SIGNALS, owner="serve")
        check_number(self.sigma, "suspicion_sigma", owner="serve", low=0, low_inclusive=False)
        check_number(self.k, "suspicion_k", owner="serve", low=1, integer=True)
        check_number(self.threshold, "suspicion_threshold", owner="serve", low=0, high=1)


@dataclass
class LoadedModel:
    name: str
    model: Any
    meta: dict
    modality: Any
    codec: Any
    class_names: list[str]
    run_dir: Path | None = None
    suspicion: SuspicionConfig = field(default_factory=SuspicionConfig)
    batch_size: int = 256
    card: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def uses_noise(self) -> bool:
        return self.suspicion.signal != "max_softmax" and self.modality.continuous

    def signal_name(self) -> str:
        return self.suspicion.signal if self.uses_noise() else "max_softmax"

    def run(self, x, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, K), suspicion score (N,)) for a model batch; called in the worker threads."""
        with torch.inference_mode():
            n = self.codec.size(x)
            if self.uses_noise():
                k = self.suspicion.k
                both = torch.cat([x, noisy_copies(x, self.suspicion.sigma, k, generator)])
                logits = self.modality.logits(self.model, both, self.batch_size)
                scores = scores_from_logits(logits[:n], logits[n:], k)
            else:
                logits = self.modality.logits(self.model, x, self.batch_size)
                scores = scores_from_logits(logits, None, 0)
            return logits[:n], scores[self.signal_name()].clamp(0, 1)


def default_name(target: str | Path, meta: dict) -> str:
    p = Path(target)
    stem = p.name if p.is_dir() else (p.parent.name if p.stem in ("best", "last") and p.parent.name else p.stem)
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", stem).strip("-.") or "model"
    return name[:64]


def class_names_of(meta: dict) -> list[str]:
    """The checkpoint's class names (no dataset needed), else "0".."K-1"."""
    data, spec = meta.get("data") or {}, meta.get("model") or {}
    k = data.get("num_classes") or spec.get("num_classes")
    names = data.get("class_names")
    if names and (k is None or len(names) == int(k)):
        return [str(n) for n in names]
    if k is None:
        raise ValueError(f"The checkpoint {meta.get('path')!r} records no number of classes; cannot serve it.")
    return [str(i) for i in range(int(k))]


def load_served_model(target: str | Path, *, name: str | None = None, which: str = "best",
                      suspicion: SuspicionConfig | None = None, max_text_chars: int = 2000,
                      max_pixels: int | None = None, batch_size: int = 256) -> LoadedModel:
    """Load a run folder or checkpoint for serving (its dataset is not needed)."""
    from ..checkpoint import load_model, resolve
    from ..modality import for_checkpoint
    from .card import build_card
    from .decode import DEFAULT_MAX_PIXELS, codec_for
    check_choice(which, "which", ("best", "last"), owner="serve")
    p = Path(target)
    path = p / f"{which}.safetensors" if p.is_dir() and (p / f"{which}.safetensors").is_file() else resolve(p)
    model, meta = load_model(path)
    model.eval()
    modality = for_checkpoint(meta)
    name = name or default_name(target, meta)
    if not NAME_RE.match(name):
        raise ValueError(f"The model name must be 1-64 letters, digits, '_', '.' or '-'. Got {name!r} instead.")
    codec = codec_for(modality.name, meta, max_text_chars=max_text_chars, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    run_dir = Path(target) if Path(target).is_dir() else Path(meta["path"]).parent
    lm = LoadedModel(name, model, meta, modality, codec, class_names_of(meta), run_dir,
                     suspicion or SuspicionConfig(), batch_size)
    lm.card = build_card(lm)
    return lm
