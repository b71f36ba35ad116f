"""Text transfer: run a word/character attack on a surrogate text classifier, hand its adversarial
sentences to the target (Papernot et al. 2016's transfer, for discrete inputs).

Why: a query-only attack run directly on an int8 (or otherwise non-differentiable) text model searches
on that model's logits; sentences found on its float twin can break sentences the direct search missed
(measured on MiniLM SST-2 int8: BENCHMARKS.md, "Hardening"). The audit of a non-differentiable text model
runs this before the direct attack, so the reported robust accuracy is the worst case of both. The target
is never queried here; the cascade checks each candidate on it.

Arguments: ``surrogate`` (a robustkit text classifier; required), ``attack`` ("word" or "char"),
``attack_params`` (the inner attack's keyword arguments). Shapes: x a list of N sentences, y (N,) ->
N sentences.
"""
from __future__ import annotations

from .registry import available, create, get_class, register_attack


@register_attack("text-transfer")
class TextTransfer:
    """Craft word/character substitutions on a surrogate text model, evaluate them on the target."""

    kind = "black-box"  # the target is only read through the cascade's check of each candidate
    modality = "text"

    def __init__(self, threat=None, *, surrogate=None, attack: str = "word", attack_params: dict | None = None,
                 seed: int = 0):
        if surrogate is None or not callable(getattr(surrogate, "predict_proba", None)):
            raise TypeError("The 'surrogate' parameter of text-transfer must be a text classifier with "
                            f"predict_proba (robustkit.models.text.TextClassifier). Got {type(surrogate).__name__}.")
        if attack == "text-transfer" or get_class(attack).modality != "text":
            raise ValueError(f"The 'attack' parameter of text-transfer must be a text attack, one of "
                             f"{[a for a in available(modality='text') if a != 'text-transfer']}. Got {attack!r}.")
        if attack_params is not None and not isinstance(attack_params, dict):
            raise TypeError("The 'attack_params' parameter of text-transfer must be a dict of the inner attack's "
                            f"keyword arguments. Got {type(attack_params).__name__} instead.")
        self.threat, self.surrogate, self.attack, self.seed = threat, surrogate, attack, seed
        self.attack_params = dict(attack_params or {})
        self._inner = create(attack, threat, seed=seed, **self.attack_params)  # validates the inner config now
        self.last_results: list = []

    def __getattr__(self, name):
        # The constraints (max_share, stop_words, min_similarity...) are the inner attack's: it made the edits.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.__dict__["_inner"], name)

    def params(self) -> dict:
        inner = self._inner.params()
        return {"attack": self.name, "inner": inner, "seed": self.seed,
                "surrogate": {"class": type(self.surrogate).__name__,
                              "spec": getattr(self.surrogate, "robustkit_spec", None)}}

    def summarize(self, results) -> dict:
        return self._inner.summarize(results)  # the search on the surrogate: success there, words changed

    def __call__(self, model, x, y, *, target=None) -> list[str]:
        if target is not None:
            raise NotImplementedError("The 'target' parameter of text-transfer is not supported: text attacks are "
                                      "untargeted.")
        out = self._inner(self.surrogate, x, y)
        self.last_results = list(self._inner.last_results)
        return out
