"""Worst-of-k random synonym substitution: a cheap discrete adversary for text training.

Each batch, every text gets ``samples`` random variants in which each substitutable word (the word
attack's own eligibility rule and candidate sets, :mod:`robustkit.data.synonyms`) is replaced with
probability ``rate`` by a uniformly drawn candidate; the variants are scored without gradients and
the one with the highest loss per text is trained on: ``CE(clean) + lam * CE(worst variant)``.

Why: the word attack moves to real words, several at a time, and often to words that are more than
one word piece; a continuous hull at one token position (ASCC/DNE) covers neither. Random variants
are what SAFER's smoothing distribution draws, so this also trains the base classifier the
certificate smooths; the worst-of-k choice (a random-restart attack of zero search cost) spends the
gradient step where the model is weakest, the idea of A2T (Yoo & Qi 2021) without its queries.
Costs ``samples`` forward passes without gradients plus two training passes per batch.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from ..._validation import check_number
from .base import Objective, _acc, crafting_model, register_objective
from .embed_pgd import _model_inputs
from ...data.synonyms import match_case as _match_case


@register_objective("random-sub")
class RandomSubstitution(Objective):
    """Train on the worst of ``samples`` random synonym-substituted variants of each text (see the module
    docstring). ``rate``: the chance each substitutable word changes; ``lam``: weight of the variant's loss;
    ``max_candidates``: candidates drawn from per word (the most frequent senses first)."""

    needs_threat = False
    modalities = ("text",)
    select_best_by = "clean"
    needs_raw_inputs = True

    def __init__(self, threat=None, *, samples: int = 4, rate: float = 0.25, lam: float = 1.0,
                 max_candidates: int = 20, wordnet_path: str | None = None, **kw):
        super().__init__(threat, **kw)
        self.samples = check_number(samples, "samples", owner=self.name, low=1, integer=True)
        self.rate = check_number(rate, "rate", owner=self.name, low=0, high=1, low_inclusive=False)
        self.lam = check_number(lam, "lam", owner=self.name, low=0)
        self.max_candidates = check_number(max_candidates, "max_candidates", owner=self.name, low=1, integer=True)
        self.wordnet_path = wordnet_path
        self._cands = None

    def _candidates(self):
        if self._cands is None:
            # Imported here: WordNet loads only for a run that uses this objective.
            from ...attacks.discrete import STOP_WORDS
            from ...data.synonyms import synonym_candidates
            self._cands = synonym_candidates(wordnet_path=self.wordnet_path, stop_words=STOP_WORDS)
        return self._cands

    def variants(self, texts: list[str], seed: int) -> list[list[str]]:
        """``samples`` random variants of each text (seeded): ``out[k][i]`` is variant k of text i."""
        from ...attacks.discrete import STOP_WORDS, eligible
        cands = self._candidates()
        rng = random.Random(seed)
        out = [[] for _ in range(self.samples)]
        for t in texts:
            words = t.split()
            slots = [(i, cands(w)[: self.max_candidates]) for i, w in enumerate(words) if eligible(w, STOP_WORDS)]
            slots = [(i, c) for i, c in slots if c]
            for k in range(self.samples):
                new = list(words)
                for i, c in slots:
                    if rng.random() < self.rate:
                        new[i] = _match_case(words[i], rng.choice(c))
                out[k].append(" ".join(new))
        return out

    def __call__(self, model, x, y, *, eps=None):
        if not isinstance(x, dict) or "texts" not in x:
            raise ValueError(f"The {self.name!r} method needs the raw texts in each batch (inputs['texts']); build "
                             "batches with robustkit.data.text.text_batches(..., with_texts=True).")
        texts = list(x["texts"])
        bare = crafting_model(model)
        variants = self.variants(texts, self._next_seed())
        was = bare.training
        if self.attack_mode == "eval":
            bare.eval()
        try:
            with torch.no_grad():
                losses = torch.stack([F.cross_entropy(bare(bare.encode(v, device=y.device)).float(), y,
                                                      reduction="none") for v in variants])  # (k, N)
        finally:
            bare.train(was)
        worst = losses.argmax(0).tolist()
        chosen = [variants[k][i] for i, k in enumerate(worst)]
        logits = model(_model_inputs(x))
        logits_adv = model(bare.encode(chosen, device=y.device))
        loss = F.cross_entropy(logits, y) + self.lam * F.cross_entropy(logits_adv, y)
        changed = sum(a != b for a, b in zip(chosen, texts)) / max(1, len(texts))
        return loss, {"clean_acc": _acc(logits, y), "adv_acc": _acc(logits_adv, y), "changed": changed}
