"""Certified robustness to word substitutions — SAFER: Ye, Gong & Liu, "SAFER: A Structure-free Approach
for Certified Robustness to Adversarial Word Substitutions" (ACL 2020).

Perturbation sets. S(w) = {w} ∪ candidates(w) for a word the word attack may change (alphabetic, longer
than one letter, not a stop word: :func:`robustkit.attacks.discrete.eligible`), S(w) = {w} otherwise.
The candidates are the word attack's own (:func:`robustkit.data.synonyms.synonym_candidates` with the
attack's stop list), in the original word's capitalisation, so the threat model and the certificate
agree: an attack may replace word x_j by any x'_j in S(x_j).

Smoothing. Π(x) replaces every word x_j independently by a uniform draw from S(x_j);
g(x) = argmax_c P_{z~Π(x)}(f(z) = c). CERTIFY (Cohen et al.'s two stages): n0 draws pick cA, n fresh
draws give the one-sided (1 - alpha) Clopper-Pearson lower bound pA of P(f(z) = cA); abstain when
pA <= 1/2.

Certificate. For x' that changes the words at positions J (x'_j ∈ S(x_j)), Π(x) and Π(x') are uniform
on the products of the sets, so their total variation distance is
    TV = 1 - Π_{j∈J} c_j / max(Π_{j∈J} a_j, Π_{j∈J} b_j) <= Δ(x') = 1 - Π_{j∈J} q_j,
    a_j = |S(x_j)|, b_j = |S(x'_j)|, c_j = |S(x_j) ∩ S(x'_j)|, q_j = c_j / max(a_j, b_j).
(SAFER's q_j = c_j / a_j assumes a_j = b_j; the max keeps the bound valid when the substitute has the
larger set, as WordNet's asymmetric lists often do — there c_j / a_j can be 1 while the distributions
differ.) Then P_{Π(x')}(f = cA) >= pA - Δ, and with SAFER's / Cohen's pB = 1 - pA the condition
pA - pB > 2Δ reads Δ < pA - 1/2, which guarantees g(x') = cA. Per position the worst substitute gives
q_j* = min_{x'_j ∈ S(x_j) \\ {x_j}} q_j, and an attack that changes at most r words is worst when it takes
the r smallest q_j*: Δ(r) = 1 - (product of the r smallest q_j*).

Reported per sentence: ``certified_words`` R = the largest r with Δ(r) < pA - 1/2, i.e. every
substitution of at most R words keeps the prediction (R = 0: certified for x itself only; R = the
sentence's word count when every word the threat model may change can change at once; -1: abstained),
and ``certified_share`` = R / words. A sentence counts as certified at word-share budget s when its
prediction is correct and R >= :func:`robustkit.attacks.discrete.budget` (words, s), the attack's own
cap (floor(s · words), at least 1 for s > 0), so budget 0.0 gives the smoothed accuracy with abstention.

Example::

    out = certify_substitutions(model, texts, labels, n0=20, n=200, alpha=0.001, shares=[0, 0.05, 0.1, 0.2])
    out["certified_accuracy"], out["abstain_rate"], out["certified_words"]
"""
from __future__ import annotations

import random
import time
from collections import Counter
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .._validation import check_number
from ..attacks.discrete import STOP_WORDS, budget, eligible
from ..modality import get_modality
from ._common import eval_mode
from .certify import summarize, top_class_bound
from ..data.synonyms import match_case as _match_case

__all__ = ["certify_substitutions"]

_OWNER = "certify_substitutions"
# Sampled texts sent to the model per call: several sentences' draws share one batched, deduplicated query.
_TEXTS_PER_CALL = 4096


class _PerturbationSets:
    """S(w) and the worst overlap q*(w) of every word, cached for the whole call."""

    def __init__(self, candidates: Callable[[str], Sequence[str]], max_candidates: int | None):
        self.candidates, self.max_candidates = candidates, max_candidates
        self._sets: dict[str, tuple[str, ...]] = {}
        self._q: dict[str, float] = {}

    def __call__(self, word: str) -> tuple[str, ...]:
        out = self._sets.get(word)
        if out is None:
            out = self._sets[word] = self._build(word)
        return out

    def _build(self, word: str) -> tuple[str, ...]:
        if not eligible(word, STOP_WORDS):
            return (word,)
        subs = self.candidates(word)
        if isinstance(subs, str) or not isinstance(subs, (list, tuple)) or not all(isinstance(s, str) for s in subs):
            raise TypeError(f"The 'candidates' parameter of {_OWNER} must map a word to a list of strings. Got "
                            f"{subs!r} for {word!r} instead.")
        if any(not s or len(s.split()) != 1 or s.strip() != s for s in subs):
            raise ValueError(f"The 'candidates' parameter of {_OWNER} must return single words (no spaces): a "
                             f"substitution may not change the word count. Got {list(subs)!r} for {word!r} instead.")
        if self.max_candidates is not None:
            subs = subs[: self.max_candidates]
        # The original first; duplicates (a candidate equal to the word, repeats) would skew the uniform draw.
        return tuple(dict.fromkeys([word] + [_match_case(word, s) for s in subs]))

    def worst_overlap(self, word: str) -> float:
        """q*(w) = min over substitutes v of |S(w) ∩ S(v)| / max(|S(w)|, |S(v)|); 1.0 when w cannot change."""
        q = self._q.get(word)
        if q is None:
            own = self(word)
            mine = set(own)
            q = min((len(mine.intersection(self(v))) / max(len(own), len(self(v))) for v in own[1:]), default=1.0)
            self._q[word] = q
        return q


def _certified_words(q_star: list[float], n_words: int, margin: float) -> int:
    """Largest r with 1 - (product of the r smallest q*) < margin; ``n_words`` when all changeable words
    may change together (no attack in the threat model can then flip the prediction)."""
    prod = 1.0
    for r, q in enumerate(sorted(q_star)):
        if 1.0 - prod * q >= margin:
            return r
        prod *= q
    return n_words


def _sample(words: list[str], sets: list[tuple[str, ...]], num: int, rng: random.Random) -> Counter:
    """``num`` draws z ~ Π(x) as texts, counted (identical draws are queried once)."""
    slots = [(j, s) for j, s in enumerate(sets) if len(s) > 1]
    out: Counter = Counter()
    for _ in range(num):
        z = list(words)
        for j, s in slots:
            z[j] = s[rng.randrange(len(s))]
        out[" ".join(z)] += 1
    return out


def _check_texts_labels(texts, labels) -> torch.Tensor:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"The 'texts' parameter of {_OWNER} must be a list of strings. Got {type(texts).__name__} "
                        "instead.")
    if not texts:
        raise ValueError(f"The 'texts' parameter of {_OWNER} must hold at least one text. Got an empty list instead.")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"The 'texts' parameter of {_OWNER} must hold non-empty strings. Got {t!r} at index {i} "
                             "instead.")
    if isinstance(labels, torch.Tensor):
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"The 'labels' parameter of {_OWNER} must hold integer class indices. Got dtype "
                            f"{labels.dtype} instead.")
        y = labels.detach().cpu().long()
    elif isinstance(labels, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        y = torch.tensor(list(labels), dtype=torch.long)
    else:
        raise TypeError(f"The 'labels' parameter of {_OWNER} must be a 1-D integer tensor or a list of ints. Got "
                        f"{type(labels).__name__} instead.")
    if y.dim() != 1 or y.shape[0] != len(texts):
        raise ValueError(f"The 'labels' parameter of {_OWNER} must have shape ({len(texts)},), one label per text. "
                         f"Got shape {tuple(y.shape)} instead.")
    return y


def _check_shares(shares) -> list[float]:
    if isinstance(shares, (str, bytes)) or not isinstance(shares, (list, tuple)) or not shares:
        raise TypeError(f"The 'shares' parameter of {_OWNER} must be a non-empty list of word shares in [0, 1]. "
                        f"Got {shares!r} instead.")
    return [check_number(s, "shares", owner=_OWNER, low=0, high=1) for s in shares]


@torch.no_grad()
def _predict(model, texts: list[str], batch_size: int) -> tuple[torch.Tensor, int]:
    """f(z) for each text and the number of classes. Texts go in sorted by length, so a batch pads little
    (a transformer's cost on CPU grows with the padded length)."""
    order = sorted(range(len(texts)), key=lambda k: len(texts[k]))
    logits = get_modality("text").logits(model, [texts[k] for k in order], batch_size)
    pred = torch.empty(len(texts), dtype=torch.long)
    pred[torch.tensor(order, dtype=torch.long)] = logits.argmax(1).cpu()
    return pred, logits.shape[1]


def certify_substitutions(model, texts: Sequence[str], labels, *, n0: int = 20, n: int = 200, alpha: float = 0.001,
                          shares: Sequence[float] = (0.0, 0.05, 0.1, 0.2),
                          candidates: Callable[[str], Sequence[str]] | None = None, max_candidates: int | None = None,
                          batch_size: int = 64, seed: int = 0, progress: bool = False) -> dict:
    """SAFER-style certification of a text classifier (see the module docstring for the certificate).

    ``model``: a text classifier with ``encode(texts)`` and ``forward`` (e.g. robustkit's TextClassifier);
    ``texts``: N whitespace-tokenized strings; ``labels``: (N,) class indices. ``candidates``: word ->
    substitutes (default: the word attack's WordNet synonyms); ``max_candidates`` caps each list (None: all, so
    the certificate covers the word attack at any of its caps; a cap K covers attacks using the first K only);
    ``shares``: word-share budgets to report certified accuracy at. Each sentence draws from its own
    ``random.Random`` seeded by (seed, index), so a result does not depend on batching or on ``limit``.

    Returns a JSON-ready dict: per sentence ``prediction`` (-1 = abstain), ``p_a_lower``,
    ``certified_words`` (R, -1 when abstaining), ``certified_share`` (R / words, None when abstaining),
    ``n_words``, ``changeable_words``; ``certified_accuracy`` at each share (95% CIs), ``abstain_rate``,
    ``smoothed_accuracy`` (plug-in majority of the n draws, no abstention), ``mean_certified_share`` (over all
    sentences, abstentions counting 0), the parameters, ``queries`` (distinct texts sent to the model) and
    ``seconds``.
    """
    y = _check_texts_labels(texts, labels)
    n0 = check_number(n0, "n0", owner=_OWNER, low=1, integer=True)
    n = check_number(n, "n", owner=_OWNER, low=1, integer=True)
    alpha = check_number(alpha, "alpha", owner=_OWNER, low=0, high=0.5, low_inclusive=False)
    shares = _check_shares(shares)
    batch_size = check_number(batch_size, "batch_size", owner=_OWNER, low=1, integer=True)
    seed = check_number(seed, "seed", owner=_OWNER, integer=True)
    if max_candidates is not None:
        max_candidates = check_number(max_candidates, "max_candidates", owner=_OWNER, low=1, integer=True)
    if candidates is None:
        from ..data.synonyms import synonym_candidates
        candidates, source = synonym_candidates(stop_words=STOP_WORDS), "wordnet"
    elif not callable(candidates):
        raise TypeError(f"The 'candidates' parameter of {_OWNER} must be a callable word -> list of substitutes. Got "
                        f"{type(candidates).__name__} instead.")
    else:
        source = getattr(candidates, "__name__", type(candidates).__name__)
    sets = _PerturbationSets(candidates, max_candidates)

    t0 = time.perf_counter()
    total = len(texts)
    pred, p_lower, cert_words, n_words, changeable, majority = [], [], [], [], [], []
    queries = 0
    step = max(1, _TEXTS_PER_CALL // (n0 + n))
    with eval_mode(model):
        for start in tqdm(range(0, total, step), desc="certify", disable=not progress, leave=False):
            rows = []
            unique: dict[str, int] = {}
            for i in range(start, min(total, start + step)):
                words = texts[i].split()
                word_sets = [sets(w) for w in words]
                rng = random.Random(seed * 1_000_003 + i)  # the word attack's per-example seeding
                draws = (_sample(words, word_sets, n0, rng), _sample(words, word_sets, n, rng))
                for d in draws:
                    for t in d:
                        unique.setdefault(t, len(unique))
                rows.append((words, word_sets, draws))
            fz, num_classes = _predict(model, list(unique), batch_size)
            queries += len(unique)
            for words, word_sets, draws in rows:
                counts0, counts = (torch.zeros(num_classes, dtype=torch.long) for _ in range(2))
                for c, d in zip((counts0, counts), draws):
                    for t, k in d.items():
                        c[fz[unique[t]]] += k
                c_a, p_a = top_class_bound(counts0, counts, alpha)
                majority.append(int(counts.argmax()))
                q_star = [sets.worst_overlap(w) for w, s in zip(words, word_sets) if len(s) > 1]
                n_words.append(len(words))
                changeable.append(len(q_star))
                p_lower.append(round(p_a, 6))
                if p_a <= 0.5:  # no class is certified to hold the majority, not even at x
                    pred.append(-1)
                    cert_words.append(-1)
                else:
                    pred.append(c_a)
                    cert_words.append(_certified_words(q_star, len(words), p_a - 0.5))
    r_t, w_t = torch.tensor(cert_words), torch.tensor(n_words)
    certified = [r_t >= torch.tensor([budget(k, s) for k in n_words]) for s in shares]
    share = [None if r < 0 else round(r / w, 6) for r, w in zip(cert_words, n_words)]
    seconds = time.perf_counter() - t0
    return {
        "certificate": "safer", "n0": n0, "n": n, "alpha": alpha, "seed": seed, "num_samples": total,
        "candidates": source, "max_candidates": max_candidates, "shares": shares,
        **summarize(pred, majority, y, certified),
        "mean_certified_share": float((r_t.clamp_min(0) / w_t).mean()),
        "prediction": pred, "p_a_lower": p_lower, "certified_words": cert_words, "certified_share": share,
        "n_words": n_words, "changeable_words": changeable,
        "queries": queries, "seconds": round(seconds, 3), "seconds_per_sentence": round(seconds / total, 5),
    }
