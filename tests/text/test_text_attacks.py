"""Word-substitution and character attacks: constraints hold for every adversarial sentence."""
from __future__ import annotations

import pytest

from robustkit.attacks.char import CharAttack
from robustkit.attacks.word_substitution import (STOP_WORDS, WordSubstitutionAttack, budget, check_constraints)
from robustkit.data.wordnet import find_wordnet

from _text_fixtures import BagEncoder, synthetic_sentences

HAS_WORDNET = find_wordnet() is not None


def _levenshtein_le1(a: str, b: str) -> bool:
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


@pytest.mark.parametrize("source", ["embedding"] + (["wordnet", "both"] if HAS_WORDNET else []))
def test_word_attack_respects_every_constraint(trained_tiny, source):
    texts, labels = synthetic_sentences(24, seed=11)
    atk = WordSubstitutionAttack(candidates=source, max_share=0.2, min_similarity=0.6, encoder=BagEncoder(),
                                 min_embedding_cos=0.0)
    results = atk.attack(trained_tiny, texts, labels, seed=0)
    assert len(results) == len(texts)
    assert any(r.success for r in results)
    for r in results:
        assert check_constraints(r, max_share=0.2, min_similarity=0.6) == []
        assert len(r.changed) <= budget(r.n_words, 0.2)
        for pos, old, new in r.changed:
            assert old.lower() not in STOP_WORDS and r.adversarial.split()[pos] == new
        if r.success:  # the reported prediction is the model's on the returned sentence
            pred = int(trained_tiny.predict_proba([r.adversarial]).argmax())
            assert pred == r.pred_adversarial != r.label and r.similarity >= 0.6
            assert r.queries > 1


@pytest.mark.skipif(not HAS_WORDNET, reason="WordNet database not installed")
def test_wordnet_candidates_keep_part_of_speech():
    atk = WordSubstitutionAttack(candidates="wordnet", min_similarity=None)
    wn = atk._wn
    for word in ("terrible", "movie", "boring", "wonderful"):
        cands = atk.candidates(word)
        assert cands, word
        assert all(wn.pos_of(c) & wn.pos_of(word) for c in cands)
    assert atk.candidates("the") == [] or "the" in STOP_WORDS


def test_similarity_threshold_rejects_dissimilar_substitutions(trained_tiny):
    texts, labels = synthetic_sentences(12, seed=3)
    strict = WordSubstitutionAttack(candidates="embedding", min_similarity=0.999, encoder=BagEncoder(),
                                    min_embedding_cos=0.0)
    assert all(not r.changed for r in strict.attack(trained_tiny, texts, labels))


def test_char_attack_edits_one_character_per_word(trained_tiny):
    texts, labels = synthetic_sentences(24, seed=12)
    atk = CharAttack(max_share=0.2)
    results = atk.attack(trained_tiny, texts, labels, seed=1)
    assert any(r.success for r in results)
    for r in results:
        assert check_constraints(r, max_share=0.2) == []
        for _, old, new in r.changed:
            assert _levenshtein_le1(old, new) and old != new
    again = atk.attack(trained_tiny, texts, labels, seed=1)
    assert [r.adversarial for r in again] == [r.adversarial for r in results]


def test_attack_bad_input(trained_tiny):
    atk = CharAttack()
    with pytest.raises(ValueError, match="non-empty strings"):
        atk.attack(trained_tiny, ["good", ""], [1, 0])
    with pytest.raises(ValueError, match="one entry per text"):
        atk.attack(trained_tiny, ["good"], [1, 0])
    with pytest.raises(TypeError, match="list of strings"):
        atk.attack(trained_tiny, "good", [1])
    with pytest.raises(ValueError, match="'max_share' parameter of word"):
        WordSubstitutionAttack(max_share=0, candidates="embedding")
    assert atk.attack(trained_tiny, [], []) == []


def test_misclassified_inputs_are_skipped_not_counted(trained_tiny):
    texts, labels = synthetic_sentences(6, seed=2)
    wrong = [1 - y for y in labels]
    results = CharAttack().attack(trained_tiny, texts, wrong)
    assert all(r.skipped and not r.success and r.adversarial == r.original and r.queries == 1 for r in results)
