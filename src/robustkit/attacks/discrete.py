"""DiscreteAttack: the base of text attacks. It owns their invariants once, as ``Attack`` does for tensors.

Same call shape as every attack: ``attack(model, x, y, *, target=None) -> x_adv`` with ``x`` a list
of str, ``y`` a LongTensor or a list of ints, and ``x_adv`` a list of str of the same length. The
per-example details (:class:`AttackResult`: changed words, predictions, queries) of the last call
stay in ``attack.last_results``; ``attack.attack(model, x, y, seed=...)`` returns them directly.

The threat is a :class:`~robustkit.threat.SubstitutionThreat`: its ``eps`` is the default
``max_share`` (the largest share of a text's words that may change). Subclasses implement
``_attack(model, texts, labels, seed) -> list[AttackResult]`` and nothing else; the base checks the
inputs, runs the search in eval mode with gradients enabled, restores every module's mode, and
checks every result against the constraints (an attack that breaks them has a bug: it raises).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Sequence

import torch

from .._validation import check_labels, check_number
from ..threat import SubstitutionThreat
from .base import attack_params, in_mode

DEFAULT_SHARE = 0.2  # max_share without a threat: PWWS/TextFooler-style evaluations change <= 20% of words

# NLTK's English stop-word list plus contractions' pieces and negations; negations and function words
# are never substituted (changing them changes meaning, not just wording).
STOP_WORDS = frozenset("""
a about above after again against ain all am an and any are aren't as at be because been before being below
between both but by can couldn couldn't d did didn didn't do does doesn doesn't doing don don't down during each
few for from further had hadn hadn't has hasn hasn't have haven haven't having he her here hers herself him
himself his how i if in into is isn isn't it it's its itself just ll m ma me mightn mightn't more most mustn
mustn't my myself needn needn't no nor not now o of off on once only or other our ours ourselves out over own re
s same shan shan't she she's should should've shouldn shouldn't so some such t than that that'll the their
theirs them themselves then there these they this those through to too under until up ve very was wasn wasn't
we were weren weren't what when where which while who whom why will with won won't wouldn wouldn't y you you'd
you'll you're you've your yours yourself yourselves n't 's 're 've 'd 'll 'm never nothing nobody none neither
cannot without less least
""".split())


@dataclass
class AttackResult:
    """One attacked example. ``changed`` lists (position, original word, new word)."""

    original: str
    adversarial: str
    label: int
    pred_original: int
    pred_adversarial: int
    success: bool
    skipped: bool  # the clean prediction was already wrong: not attacked
    changed: list = field(default_factory=list)
    n_words: int = 0
    queries: int = 0
    similarity: float | None = None

    @property
    def share_changed(self) -> float:
        return len(self.changed) / max(1, self.n_words)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["share_changed"] = self.share_changed
        return d


def budget(n_words: int, max_share: float) -> int:
    """Most words an example of ``n_words`` may have changed: floor(max_share · n), at least 1 — except
    for max_share 0 (a threat with eps=0: nothing may change)."""
    if max_share <= 0:
        return 0
    return max(1, math.floor(max_share * n_words + 1e-9))


def eligible(word: str, stop_words: frozenset) -> bool:
    return word.isalpha() and len(word) > 1 and word.lower() not in stop_words


def check_constraints(result: AttackResult, *, max_share: float, stop_words: frozenset = STOP_WORDS,
                      min_similarity: float | None = None) -> list[str]:
    """Violations of the attack's constraints by one result (empty list: all respected).

    With ``stop_words`` empty any token may change (an attack without a stop list); otherwise stop
    words and non-words (punctuation, numbers, single letters) must stay."""
    problems = []
    orig, adv = result.original.split(), result.adversarial.split()
    if len(orig) != len(adv):
        return [f"word count changed ({len(orig)} -> {len(adv)})"]
    diff = [i for i, (a, b) in enumerate(zip(orig, adv)) if a != b]
    if len(diff) > budget(len(orig), max_share):
        problems.append(f"{len(diff)} of {len(orig)} words changed (max share {max_share})")
    for i in diff:
        if stop_words and not eligible(orig[i], stop_words):
            problems.append(f"stop word or non-word {orig[i]!r} at position {i} was changed")
    if min_similarity is not None and diff and (result.similarity is None or result.similarity < min_similarity - 1e-6):
        problems.append(f"similarity {result.similarity} below {min_similarity}")
    return problems


class DiscreteAttack:
    """Base class of text attacks; subclasses are registered with ``@register_attack`` and implement ``_attack``.

    Keyword arguments common to all of them:
      max_share: the largest share of a text's words that may change, in (0, 1]; default: the
        threat's eps, else 0.2.
      seed: seeds the attack's own random choices; the same seed gives the same result.
    """

    name: ClassVar[str] = "discrete"
    kind: ClassVar[str] = "discrete"
    modality: ClassVar[str] = "text"
    # Constraints every result is checked against; subclasses set their own.
    stop_words: frozenset = frozenset()
    min_similarity: float | None = None

    def __init__(self, threat: SubstitutionThreat | None = None, *, max_share: float | None = None, seed: int = 0):
        if threat is not None and not isinstance(threat, SubstitutionThreat):
            raise TypeError(f"The 'threat' parameter of {self.name} must be a robustkit.threat.SubstitutionThreat "
                            f"or None (text attacks change words, not pixels). Got {threat!r} instead.")
        if max_share is None:  # eps 0 is allowed here: the threat says "change nothing"
            max_share = threat.eps if threat is not None else DEFAULT_SHARE
        else:
            max_share = check_number(max_share, "max_share", owner=self.name, low=0, high=1, low_inclusive=False)
        self.max_share = float(max_share)
        self.threat = threat if threat is not None else SubstitutionThreat(self.max_share)
        self.seed = check_number(seed, "seed", owner=self.name, low=0, integer=True)
        self.last_results: list[AttackResult] = []

    # -- reporting ------------------------------------------------------------------------------
    def params(self) -> dict:
        """The full configuration (constructor arguments + threat model) for reports and provenance."""
        return attack_params(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if k != "attack")
        return f"{type(self).__name__}({args})"

    def summarize(self, results: Sequence[AttackResult]) -> dict:
        """Aggregate per-example records for reports: success rate, words changed, queries, similarity
        and the number of results breaking the constraints (0 unless the attack has a bug)."""
        attacked = [r for r in results if not r.skipped]
        wins = [r for r in attacked if r.success]
        mean = lambda xs: (sum(xs) / len(xs)) if xs else None  # noqa: E731
        sims = [r.similarity for r in wins if r.similarity is not None]
        return {"n_attacked": len(attacked), "n_success": len(wins),
                "attack_success_rate": len(wins) / len(attacked) if attacked else None,
                "mean_share_changed": mean([r.share_changed for r in wins]) or 0.0,
                "max_share_changed": max((r.share_changed for r in wins), default=0.0),
                "mean_words_changed": mean([float(len(r.changed)) for r in wins]) or 0.0,
                "mean_queries": mean([float(r.queries) for r in attacked]) or 0.0,
                "mean_similarity": mean(sims),
                "constraint_violations": sum(1 for r in results if check_constraints(
                    r, max_share=self.max_share, stop_words=self.stop_words, min_similarity=self.min_similarity))}

    # -- the call -------------------------------------------------------------------------------
    def __call__(self, model, x: Sequence[str], y, *, target=None) -> list[str]:
        if target is not None:
            raise NotImplementedError(f"The 'target' parameter of {self.name} is not supported: text attacks "
                                      f"are untargeted. Got target={target!r}; call without it.")
        return [r.adversarial for r in self.attack(model, x, y)]

    def attack(self, model, x: Sequence[str], y, *, seed: int | None = None) -> list[AttackResult]:
        """Attack the texts ``x`` (true labels ``y``); one :class:`AttackResult` per text, also kept in
        ``last_results``. ``seed`` overrides the constructor's seed for this call."""
        texts, labels = self._check_inputs(model, x, y)
        seed = self.seed if seed is None else check_number(seed, "seed", owner=self.name, low=0, integer=True)
        results: list[AttackResult] = []
        if texts:
            # Eval mode (dropout off) while searching; every module's own flag comes back afterwards.
            with in_mode(model, "eval"), torch.enable_grad():
                results = list(self._attack(model, texts, labels, seed))
            self._check_results(texts, results)
        self.last_results = results
        return results

    def _attack(self, model, texts: list[str], labels: list[int], seed: int) -> list[AttackResult]:
        raise NotImplementedError

    # -- the invariants -------------------------------------------------------------------------
    def _check_inputs(self, model, x, y) -> tuple[list[str], list[int]]:
        if not callable(getattr(model, "predict_proba", None)):
            raise TypeError(f"The 'model' parameter of {self.name} must be a text classifier with "
                            f"predict_proba(texts) (robustkit.models.text.TextClassifier). "
                            f"Got {type(model).__name__} instead.")
        if isinstance(x, str) or not isinstance(x, (list, tuple)):
            raise TypeError(f"The 'x' parameter of {self.name} must be a list of strings, not one string or "
                            f"another type. Got {type(x).__name__} instead.")
        for i, t in enumerate(x):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"The 'x' parameter of {self.name} must hold non-empty strings. "
                                 f"Got {t!r} at index {i} instead.")
        if isinstance(y, torch.Tensor):
            if y.dim() != 1 or y.is_floating_point() or y.is_complex():
                raise TypeError(f"The 'y' parameter of {self.name} must be a 1-D integer tensor or a list of ints. "
                                f"Got a tensor of shape {tuple(y.shape)} and dtype {y.dtype} instead.")
            labels = [int(v) for v in y.tolist()]
        else:
            if isinstance(y, (str, bytes)) or not isinstance(y, Sequence) or any(
                    isinstance(v, bool) or not isinstance(v, int) for v in y):
                raise TypeError(f"The 'y' parameter of {self.name} must be a list of ints or a LongTensor. "
                                f"Got {y!r} instead.")
            labels = [int(v) for v in y]
        if len(labels) != len(x):
            raise ValueError(f"The 'y' parameter of {self.name} must have one entry per text in 'x' ({len(x)}). "
                             f"Got {len(labels)} instead.")
        n_classes = getattr(model, "num_classes", None)
        if not isinstance(n_classes, int) and x:
            n_classes = int(model.predict_proba(list(x[:1])).shape[-1])
        if labels:
            check_labels(torch.tensor(labels), n_classes, "y", self.name)
        return list(x), labels

    def _check_results(self, texts: list[str], results: list[AttackResult]) -> None:
        if len(results) != len(texts) or any(r.original != t for r, t in zip(results, texts)):
            raise RuntimeError(f"Attack {self.name!r} returned {len(results)} results for {len(texts)} texts, "
                               "or out of order. This is a bug in the attack.")
        for k, r in enumerate(results):
            problems = check_constraints(r, max_share=self.max_share, stop_words=self.stop_words,
                                         min_similarity=self.min_similarity)
            if problems:
                raise RuntimeError(f"Attack {self.name!r} left its threat model on text {k} ({'; '.join(problems)}): "
                                   f"{r.adversarial!r}. This is a bug in the attack.")
