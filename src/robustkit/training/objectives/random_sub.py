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

``guide="taylor"`` draws the variants where the model is weak instead of uniformly: one backward pass
gives every candidate's first-order loss increase (HotFlip's Taylor term,
:func:`robustkit.attacks.word_substitution.substitution_gains`); variant 0 takes, in each text, the
``max_share`` of its words whose best candidate promises most, the other variants do the same after
Gumbel noise of scale ``temperature`` (times the text's gain spread) on the estimates. The budget is
the word attack's own (at most 20% of the words), so the training threat is the evaluated threat, not
a heavier corruption of half the words that costs clean accuracy.

``loss="kl"`` trains ``CE(clean) + lam * KL(p_clean || p_variant)`` (TRADES's form) and picks the
variant with the largest KL: it asks for an unchanged prediction under substitution rather than the
right label on a corrupted text, which leaves the clean cross-entropy alone to fit the labels.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from ..._validation import check_choice, check_number
from .base import Objective, _acc, crafting_model, register_objective
from .embed_pgd import _model_inputs
from ...data.synonyms import match_case as _match_case


@register_objective("random-sub")
class RandomSubstitution(Objective):
    """Train on the worst of ``samples`` random synonym-substituted variants of each text (see the module
    docstring). ``rate``: the chance each substitutable word changes; ``lam``: weight of the variant's loss;
    ``max_candidates``: candidates drawn from per word (the most frequent senses first); ``guide``: ``random``
    (uniform) or ``taylor`` (gradient-guided, ``max_share`` of the words, ``temperature`` of the noise);
    ``loss``: ``ce`` or ``kl`` (the variant's term); ``skip_mapped``: on a model with a word map (synonym encoding,
    rare words), draw only substitutes the map does not turn back into the original word."""

    needs_threat = False
    modalities = ("text",)
    select_best_by = "clean"
    needs_raw_inputs = True

    def __init__(self, threat=None, *, samples: int = 4, rate: float = 0.25, lam: float = 1.0,
                 max_candidates: int = 20, guide: str = "random", max_share: float = 0.2,
                 temperature: float = 1.0, loss: str = "ce", skip_mapped: bool = False,
                 wordnet_path: str | None = None, **kw):
        super().__init__(threat, **kw)
        self.samples = check_number(samples, "samples", owner=self.name, low=1, integer=True)
        self.rate = check_number(rate, "rate", owner=self.name, low=0, high=1, low_inclusive=False)
        self.lam = check_number(lam, "lam", owner=self.name, low=0)
        self.max_candidates = check_number(max_candidates, "max_candidates", owner=self.name, low=1, integer=True)
        self.guide = check_choice(guide, "guide", ("random", "taylor"), owner=self.name)
        self.max_share = check_number(max_share, "max_share", owner=self.name, low=0, high=1, low_inclusive=False)
        self.temperature = check_number(temperature, "temperature", owner=self.name, low=0)
        self.loss = check_choice(loss, "loss", ("ce", "kl"), owner=self.name)
        if not isinstance(skip_mapped, bool):
            raise TypeError(f"The 'skip_mapped' parameter of training method {self.name!r} must be true or false. "
                            f"Got {skip_mapped!r}.")
        self.skip_mapped = skip_mapped
        self.wordnet_path = wordnet_path
        self._cands = None

    def _candidates(self):
        if self._cands is None:
            # Imported here: WordNet loads only for a run that uses this objective.
            from ...attacks.discrete import STOP_WORDS
            from ...data.synonyms import synonym_candidates
            self._cands = synonym_candidates(wordnet_path=self.wordnet_path, stop_words=STOP_WORDS)
        return self._cands

    def _candidate_fn(self, word_map=None):
        """The candidate sets, without the substitutes ``word_map`` reads as the original word when
        ``skip_mapped``: those variants equal the clean text to the model, a draw spent on nothing."""
        cands = self._candidates()
        if not (self.skip_mapped and word_map is not None):
            return cands
        same = lambda w, c: word_map.word(c).lower() == word_map.word(w).lower()  # noqa: E731
        return lambda w: [c for c in cands(w) if not same(w, c)]

    def variants(self, texts: list[str], seed: int, word_map=None) -> list[list[str]]:
        """``samples`` random variants of each text (seeded): ``out[k][i]`` is variant k of text i."""
        from ...attacks.discrete import STOP_WORDS, eligible
        cands = self._candidate_fn(word_map)
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

    def guided_variants(self, model, texts: list[str], labels: list[int], seed: int) -> list[list[str]]:
        """``samples`` gradient-guided variants of each text (see the module docstring), ``out[k][i]``."""
        from ...attacks.discrete import STOP_WORDS, eligible
        from ...attacks.word_substitution import substitution_gains
        cands = self._candidate_fn(getattr(model, "word_map", None))
        words = [t.split() for t in texts]
        subs = [{i: [_match_case(w, c) for c in cands(w)[: self.max_candidates]]
                 for i, w in enumerate(ws) if eligible(w, STOP_WORDS) and cands(w)} for ws in words]
        gains = substitution_gains(model, words, labels, subs)
        rng = random.Random(seed)
        out = [[] for _ in range(self.samples)]
        for ws, sb, gn in zip(words, subs, gains):
            budget = max(1, int(self.max_share * len(ws)))
            finite = [v for row in gn.values() for v in row if math.isfinite(v)]
            spread = (max(finite) - min(finite)) if len(finite) > 1 else 1.0
            for k in range(self.samples):
                noise = 0.0 if k == 0 else self.temperature * (spread or 1.0)
                best = []
                for i, row in gn.items():
                    # Gumbel(0, 1) noise: argmax of gain + noise samples a softmax over the candidates.
                    scored = [(v + noise * -math.log(-math.log(rng.random() or 1e-12)), j)
                              for j, v in enumerate(row) if math.isfinite(v)]
                    if scored:
                        v, j = max(scored)
                        best.append((v, i, sb[i][j]))
                new = list(ws)
                for v, i, c in sorted(best, reverse=True)[:budget]:
                    new[i] = c
                out[k].append(" ".join(new))
        return out

    def __call__(self, model, x, y, *, eps=None):
        if not isinstance(x, dict) or "texts" not in x:
            raise ValueError(f"The {self.name!r} method needs the raw texts in each batch (inputs['texts']); build "
                             "batches with robustkit.data.text.text_batches(..., with_texts=True).")
        texts = list(x["texts"])
        bare = crafting_model(model)
        seed = self._next_seed()
        if self.guide == "taylor":
            variants = self.guided_variants(bare, texts, y.tolist(), seed)
        else:
            variants = self.variants(texts, seed, getattr(bare, "word_map", None))
        was = bare.training
        if self.attack_mode == "eval":
            bare.eval()
        try:
            with torch.no_grad():
                if self.loss == "kl":
                    ref = F.log_softmax(bare(_model_inputs(x)).float(), -1)
                    losses = torch.stack([_kl(ref, bare(bare.encode(v, device=y.device)).float())
                                          for v in variants])  # (k, N)
                else:
                    losses = torch.stack([F.cross_entropy(bare(bare.encode(v, device=y.device)).float(), y,
                                                          reduction="none") for v in variants])  # (k, N)
        finally:
            bare.train(was)
        worst = losses.argmax(0).tolist()
        chosen = [variants[k][i] for i, k in enumerate(worst)]
        logits = model(_model_inputs(x))
        logits_adv = model(bare.encode(chosen, device=y.device))
        if self.loss == "kl":
            term = _kl(F.log_softmax(logits.float(), -1), logits_adv.float()).mean()
        else:
            term = F.cross_entropy(logits_adv, y)
        loss = F.cross_entropy(logits, y) + self.lam * term
        changed = sum(a != b for a, b in zip(chosen, texts)) / max(1, len(texts))
        return loss, {"clean_acc": _acc(logits, y), "adv_acc": _acc(logits_adv, y), "changed": changed}


def _kl(log_p_clean: torch.Tensor, logits_variant: torch.Tensor) -> torch.Tensor:
    """Per-example KL(p_clean || p_variant), TRADES's direction (the clean side is the target)."""
    return F.kl_div(F.log_softmax(logits_variant, -1), log_p_clean, log_target=True, reduction="none").sum(-1)
