"""Character-level attack in the DeepWordBug style (Gao et al. 2018, "Black-box Generation of
Adversarial Text Sequences to Evade Deep Learning Classifiers").

Words are ranked by importance (deletion score, as DeepWordBug's "replace-1" scoring), then the most
important ones receive one character edit each — swap of two adjacent letters, substitution,
deletion or insertion (edit distance 1 per word) — through the same batched greedy search as the
word attack: the edit that flips the prediction or lowers the true-class probability most wins.
Stop words stay untouched and at most ``max_share`` of the words change. No sentence-encoder check
by default (encoders are not meaningful judges of typos).
"""
from __future__ import annotations

import random
import string
import zlib

from .registry import register_attack
from .word_substitution import GreedyAttack

LETTERS = string.ascii_lowercase


@register_attack("char")
class CharAttack(GreedyAttack):
    """DeepWordBug-like typos (Gao et al. 2018): one character edit in each of the most important words.

    ``max_candidates`` random edits per word, seeded per example. Example::

        atk = attacks.create("char", SubstitutionThreat(0.2), seed=0)
        typo_texts = atk(model, ["a gorgeous , witty film"], [1])
    """

    def __init__(self, threat=None, *, max_candidates: int = 8, min_similarity: float | None = None, **kw):
        super().__init__(threat, max_candidates=max_candidates, min_similarity=min_similarity, **kw)

    def candidates(self, word: str, state=None) -> list[str]:
        if len(word) < 2:
            return []
        # Outside a search, seed from the word itself: crc32, not hash(), which changes per process.
        rng = state.rng if state is not None else random.Random(zlib.crc32(word.encode()))
        out: list[str] = []
        ops = ("swap", "substitute", "delete", "insert")
        tries = 0
        while len(out) < self.max_candidates and tries < 8 * self.max_candidates:
            tries += 1
            op = ops[len(out) % 4] if tries <= 4 else rng.choice(ops)
            i = rng.randrange(len(word))
            if op == "swap" and len(word) > 2:
                j = min(i, len(word) - 2)
                new = word[:j] + word[j + 1] + word[j] + word[j + 2:]
            elif op == "substitute":
                new = word[:i] + rng.choice(LETTERS) + word[i + 1:]
            elif op == "delete" and len(word) > 2:
                new = word[:i] + word[i + 1:]
            else:
                new = word[:i] + rng.choice(LETTERS) + word[i:]
            if new != word and new.lower() != word.lower() and new not in out:
                out.append(new)
        return out
