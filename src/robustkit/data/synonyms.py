"""Synonym candidate sets for word substitutions: WordNet looked up by lemma, substitutes re-inflected.

One candidate function serves the word attack, the synonym-hull training objectives (ASCC/DNE) and
SAFER-style certification, so the threat model, the defence and the certificate agree on what a
word may become.

Why lemmas: WordNet indexes base forms only ("lack", "seem", "character"). Looking up the exact
form leaves inflected words ("lacks", "seems", "characters") without synonyms: on SST-2's dev set
that was 1,258 words with candidates against PWWS's 1,602 (NLTK's reader applies morphy). Why
re-inflection: PWWS substitutes the bare lemma ("lacks" -> "miss"), which breaks the sentence's
grammar; here each synonym takes the original's inflection ("lacks" -> "misses") through
``lemminflect`` (Penn tags VBZ/VBD/VBG/VBN/NNS/JJR/JJS/RBR/RBS).

Each part of speech the word can have contributes its synonyms (the lexical POS from WordNet,
no contextual tagger); lists are interleaved across POS and senses so a capped list still covers
every sense class. Without ``lemminflect`` the lookup falls back to exact forms (with a warning).
"""
from __future__ import annotations

import functools
import logging
from typing import Iterable

from .wordnet import POS_FILES, load_wordnet

log = logging.getLogger(__name__)

_UPOS = {"n": "NOUN", "v": "VERB", "a": "ADJ", "r": "ADV"}
# The tag of an inflected form when lemminflect does not list it (e.g. "lacks" as a noun plural):
# the morphy rule that produced the lemma says which inflection it was.
_SUFFIX_TAGS = {"n": [("s", "NNS")], "v": [("s", "VBZ"), ("ing", "VBG"), ("ed", "VBD")],
                "a": [("est", "JJS"), ("er", "JJR")], "r": [("est", "RBS"), ("er", "RBR")]}


def _lemminflect():
    try:
        import lemminflect
        return lemminflect
    except ModuleNotFoundError:
        return None


def match_case(template: str, word: str) -> str:
    """``word`` in ``template``'s capitalisation (ALL CAPS, Capitalized or as is): the one rule the word
    attack, the training objectives and SAFER certification share, so they substitute the same strings."""
    if template.isupper() and len(template) > 1:
        return word.upper()
    return word.capitalize() if template[:1].isupper() else word


class SynonymCandidates:
    """``candidates(word) -> [substitutes]``: WordNet synonyms of the word's lemmas, in the word's form.

    ``max_candidates`` caps each list (None: all); ``stop_words`` are never offered; ``inflect=False``
    returns bare lemmas (PWWS's behaviour). Lists are cached per lower-cased word.
    """

    def __init__(self, *, wordnet_path: str | None = None, max_candidates: int | None = None,
                 stop_words: Iterable[str] = (), inflect: bool = True, pos: Iterable[str] = tuple(POS_FILES)):
        self.wn = load_wordnet(wordnet_path)
        self.max_candidates = max_candidates
        self.stop_words = frozenset(w.lower() for w in stop_words)
        self.pos = tuple(p for p in POS_FILES if p in set(pos))
        self._li = _lemminflect() if inflect else None
        if inflect and self._li is None:
            log.warning("lemminflect is not installed (pip install 'robustkit[text]'): synonyms are looked up by "
                        "the exact word form only, so inflected words get fewer candidates.")
        self._cache: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        w = word.lower()
        out = self._cache.get(w)
        if out is None:
            out = self._cache[w] = self._lookup(w)
        return out if self.max_candidates is None else out[: self.max_candidates]

    # -- lookup -----------------------------------------------------------------------------------
    def _tags(self, w: str, lemma: str, pos: str) -> list[str]:
        """Penn tags under which ``lemma`` is spelled ``w`` (empty: ``w`` is the base form)."""
        if w == lemma:
            return []
        tags = [t for t, forms in self._li.getAllInflections(lemma, upos=_UPOS[pos]).items() if w in forms]
        if not tags:
            tags = [t for suffix, t in _SUFFIX_TAGS[pos] if w.endswith(suffix)][:1]
        return tags

    def _inflect(self, lemma: str, tags: list[str]) -> str | None:
        if not tags:
            return lemma
        # Regular rules are safe for verbs and nouns ("scat" -> "scatting"), not for comparatives
        # ("amusing" -> "amusingest"): adjectives and adverbs keep only dictionary forms.
        oov = tags[0][:2] in ("VB", "NN")
        forms = self._li.getInflection(lemma, tag=tags[0], inflect_oov=oov)
        return forms[0] if forms else None

    def _lookup(self, w: str) -> list[str]:
        if not w.isalpha() or w in self.stop_words:
            return []
        lists: list[list[str]] = []
        for pos in self.pos:
            lemmas = self.wn.base_forms(w, pos) if self._li is not None else ([w] if w in self.wn._index[pos] else [])
            for lemma in lemmas:
                tags = self._tags(w, lemma, pos) if self._li is not None else []
                if tags is None:
                    continue
                syns = self.wn.synonyms(lemma).get(pos, [])
                forms = []
                for s in syns:
                    f = self._inflect(s, tags) if self._li is not None else s
                    f = f.lower() if f else f
                    if f and f.isalpha() and f != w and f not in self.stop_words and f not in forms:
                        forms.append(f)
                if forms:
                    lists.append(forms)
        out: list[str] = []
        seen: set[str] = set()
        for k in range(max((len(v) for v in lists), default=0)):
            for v in lists:
                if k < len(v) and v[k] not in seen:
                    seen.add(v[k])
                    out.append(v[k])
        return out


_SHARED: dict[tuple, SynonymCandidates] = {}


def synonym_candidates(*, wordnet_path: str | None = None, stop_words: Iterable[str] = (),
                       inflect: bool = True) -> SynonymCandidates:
    """A process-wide candidate function (its per-word cache is shared by attacks, training and certify)."""
    key = (wordnet_path, frozenset(stop_words), inflect)
    if key not in _SHARED:
        _SHARED[key] = SynonymCandidates(wordnet_path=wordnet_path, stop_words=stop_words, inflect=inflect)
    return _SHARED[key]


class SynonymEncoding:
    """Synonym encoding (SEM; Wang, Jin & He, "Natural Language Adversarial Defense through Synonym
    Encoding", UAI 2021): every word is replaced by the representative of its synonym cluster before
    the model sees it, so a substitution inside a cluster changes nothing the model can see.

    Clusters are built once, deterministically: the model vocabulary's whole words are visited in
    vocabulary order (frequency order for BERT-style vocabularies), and each word not yet assigned
    becomes a representative for itself and every not-yet-assigned candidate of it (the word
    attack's own candidate sets). One hop only: following candidates of candidates chains unrelated
    words into clusters of hundreds ("made", "going", "back"), which costs meaning, while one hop
    already puts about half of the attack's (word, substitute) pairs of SST-2's dev set into one
    cluster. Stop words and non-words are never mapped; capitalisation follows the original word.
    """

    def __init__(self, vocabulary: Iterable[str], candidates: "SynonymCandidates"):
        from ..attacks.discrete import STOP_WORDS, eligible
        self.table: dict[str, str] = {}
        for v in vocabulary:
            if v in self.table or not eligible(v, STOP_WORDS) or v != v.lower():
                continue
            self.table[v] = v
            for c in candidates(v):
                self.table.setdefault(c, v)

    def word(self, w: str) -> str:
        rep = self.table.get(w.lower())
        if rep is None or rep == w.lower():
            return w
        return rep.capitalize() if w[:1].isupper() else rep

    def __call__(self, text: str) -> str:
        return " ".join(self.word(w) for w in text.split())


class RareWordMap:
    """Rare-word canonicalization: a word the training texts (almost) never use is replaced by its most
    used candidate substitute before the model sees it; every word the training texts use keeps itself.

    Why, measured on SST-2 (BENCHMARKS.md, issue 16): half of the substitutes the word attack succeeds with
    never occur in the training sentences ("may" -> "whitethorn", "forever" -> "eternally"), while the
    words of real sentences mostly do. Mapping unseen words back to a seen synonym undoes a third of the
    attack's substitutions (usually to the very word it replaced) and changes 3% of the dev words, where
    synonym encoding over the whole vocabulary (:class:`SynonymEncoding`) undoes a little more but
    changes 18% of them and costs clean accuracy. The attack still has the seen substitutes; adversarial
    training covers those, because the model has seen them.

    ``counts``: word -> occurrences in the training texts (lower case; only words with at least
    ``min_count`` are kept, and only they can be targets). Built by :meth:`from_texts`, stored in the
    checkpoint (:meth:`to_spec`, JSON) so attacks, certification and serving apply the same map.
    """

    def __init__(self, counts: dict[str, int], candidates: "SynonymCandidates", min_count: int = 2):
        from .._validation import check_number
        self.min_count = check_number(min_count, "min_count", owner="RareWordMap", low=1, integer=True)
        bad = next(((w, c) for w, c in counts.items() if isinstance(c, bool) or not isinstance(c, int)), None)
        if bad is not None:
            raise ValueError(f"The 'counts' parameter of RareWordMap must map words to integer counts. Got "
                             f"{bad[0]!r}: {bad[1]!r}.")
        self.counts = {str(w): c for w, c in counts.items() if c >= self.min_count}
        self._candidates = candidates
        self._cache: dict[str, str] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str], candidates: "SynonymCandidates", min_count: int = 2) -> "RareWordMap":
        counts: dict[str, int] = {}
        for t in texts:
            for w in t.lower().split():
                counts[w] = counts.get(w, 0) + 1
        return cls(counts, candidates, min_count)

    def to_spec(self) -> dict:
        return {"min_count": self.min_count, "counts": dict(sorted(self.counts.items()))}

    def target(self, w: str) -> str:
        """The lower-case word ``w`` is read as (itself, or its most used candidate when ``w`` is rare)."""
        from ..attacks.discrete import STOP_WORDS, eligible
        lw = w.lower()
        rep = self._cache.get(lw)
        if rep is None:
            rep = lw
            if lw not in self.counts and eligible(lw, STOP_WORDS):
                known = [c for c in self._candidates(lw) if c in self.counts]
                if known:  # ties go to the earlier candidate (the more frequent WordNet sense): deterministic
                    rep = max(known, key=lambda c: self.counts[c])
            self._cache[lw] = rep
        return rep

    def word(self, w: str) -> str:
        rep = self.target(w)
        return w if rep == w.lower() else match_case(w, rep)

    def __call__(self, text: str) -> str:
        return " ".join(self.word(w) for w in text.split())


def rare_word_map_from_spec(spec: dict, wordnet_path: str | None = None) -> RareWordMap:
    """Rebuild the map a checkpoint stores (:meth:`RareWordMap.to_spec`)."""
    from ..attacks.discrete import STOP_WORDS
    if not isinstance(spec, dict) or not isinstance(spec.get("counts"), dict):
        raise ValueError(f"A rare-word map spec must be a mapping with 'min_count' and 'counts'. Got "
                         f"{type(spec).__name__} with keys {sorted(spec) if isinstance(spec, dict) else []}.")
    return RareWordMap(spec["counts"], synonym_candidates(wordnet_path=wordnet_path, stop_words=STOP_WORDS),
                       spec.get("min_count", 2))


@functools.lru_cache(maxsize=4)
def _encoding_for(vocab_words: tuple, wordnet_path: str | None) -> SynonymEncoding:
    from ..attacks.discrete import STOP_WORDS
    return SynonymEncoding(vocab_words, synonym_candidates(wordnet_path=wordnet_path, stop_words=STOP_WORDS))


def synonym_encoding_for(tokenizer, wordnet_path: str | None = None) -> SynonymEncoding:
    """The synonym encoding of a tokenizer's whole-word vocabulary (built once per process, ~2 s)."""
    words = tuple(w for w, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]) if w.isalpha())
    return _encoding_for(words, wordnet_path)
