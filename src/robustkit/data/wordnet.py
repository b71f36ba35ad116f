"""A small reader of the WordNet 3 database files (Debian's ``wordnet-base`` installs them in
/usr/share/wordnet) for synonym candidates, with no NLTK and no download.

Reads ``index.<pos>`` (lemma -> synset offsets in sense order) and ``data.<pos>`` (offset -> words)
and the ``<pos>.exc`` exception lists for inflected forms. Only single-word lemmas are returned.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
SEARCH_DIRS = ("/usr/share/wordnet", "/usr/share/wordnet/dict", "/usr/local/share/wordnet", "/opt/homebrew/share/wordnet")


def find_wordnet(path: str | os.PathLike | None = None) -> Path | None:
    """The folder holding index.noun/data.noun: ``path``, ``$WNSEARCHDIR``, ``$WNHOME/dict``, system folders."""
    options = [path, os.environ.get("WNSEARCHDIR"),
               os.path.join(os.environ["WNHOME"], "dict") if os.environ.get("WNHOME") else None, *SEARCH_DIRS]
    for opt in options:
        if opt and (Path(opt) / "index.noun").is_file() and (Path(opt) / "data.noun").is_file():
            return Path(opt)
    return None


class WordNet:
    """Synonyms by part of speech: ``synonyms("good") -> {"a": [...], "n": [...], ...}``."""

    def __init__(self, path: str | os.PathLike | None = None):
        root = find_wordnet(path)
        if root is None:
            raise FileNotFoundError("WordNet database not found (looked for index.noun in "
                                    f"{path or '$WNSEARCHDIR, $WNHOME/dict, ' + ', '.join(SEARCH_DIRS)}). "
                                    "On Debian/Ubuntu: apt-get install wordnet-base; or use candidates='embedding'.")
        self.root = root
        self._index: dict[str, dict[str, str]] = {}
        self._data: dict[str, bytes] = {}
        self._exc: dict[str, dict[str, list[str]]] = {}
        for pos, name in POS_FILES.items():
            self._index[pos] = self._read_index(root / f"index.{name}")
            self._data[pos] = self._read_data(root / f"data.{name}")
            self._exc[pos] = self._read_exc(root / f"{name}.exc")
        log.info("loaded WordNet from %s (%d noun lemmas)", root, len(self._index["n"]))

    @staticmethod
    def _read_index(path: Path) -> dict[str, str]:
        """lemma -> its raw index line; lines are parsed on first use (loading stays about a second)."""
        out = {}
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.startswith(" "):  # lines starting with a space are the license header
                    out[line[: line.find(" ")]] = line
        return out

    @staticmethod
    def _read_data(path: Path) -> bytes:
        """The data file's bytes: synset offsets are byte offsets into it, so lookups need no parsing pass."""
        return path.read_bytes()

    def _offsets(self, pos: str, lemma: str) -> list[int]:
        line = self._index[pos].get(lemma)
        if line is None:
            return []
        f = line.split()
        n_synsets, n_ptrs = int(f[2]), int(f[3])
        return [int(o) for o in f[6 + n_ptrs: 6 + n_ptrs + n_synsets]]

    def _words(self, pos: str, offset: int) -> list[str]:
        blob = self._data[pos]
        line = blob[offset: blob.find(b"\n", offset)].decode("utf-8", errors="replace")
        # offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id ...] ...; split only that far
        head = line.split(" ", 4)
        n_words = int(head[3], 16)
        return [w.lower() for w in head[4].split(" ", 2 * n_words)[: 2 * n_words: 2]]

    @staticmethod
    def _read_exc(path: Path) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                f = line.split()
                if len(f) >= 2:
                    out[f[0]] = f[1:]
        return out

    def base_forms(self, word: str, pos: str) -> list[str]:
        """Morphy-style lemmas of ``word`` for one POS (exceptions, then suffix rules)."""
        w = word.lower()
        forms = [w] if w in self._index[pos] else []
        forms += [b for b in self._exc[pos].get(w, []) if b in self._index[pos]]
        rules = {"n": [("s", ""), ("ses", "s"), ("xes", "x"), ("ches", "ch"), ("shes", "sh"), ("ies", "y")],
                 "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
                       ("ing", "")],
                 "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")], "r": []}[pos]
        for suffix, repl in rules:
            if w.endswith(suffix) and len(w) > len(suffix) + 1:
                b = w[: -len(suffix)] + repl
                if b in self._index[pos] and b not in forms:
                    forms.append(b)
        return forms

    def pos_of(self, word: str) -> set[str]:
        return {pos for pos in POS_FILES if self.base_forms(word, pos)}

    def synonyms(self, word: str) -> dict[str, list[str]]:
        """Single-word synonyms per POS, most frequent sense first. Only exact lemmas (an inflected word
        such as 'movies' would need re-inflection of its synonyms, which this reader does not attempt)."""
        return _synonyms_cached(self, word.lower())


@lru_cache(maxsize=200_000)
def _synonyms_cached(wn: WordNet, w: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pos in POS_FILES:
        offsets = wn._offsets(pos, w)
        if not offsets:
            continue
        seen, syns = {w}, []
        for off in offsets:
            for lemma in wn._words(pos, off):
                lemma = lemma.split("(")[0]  # adjective markers such as "good(a)"
                if lemma not in seen and lemma.isalpha():
                    seen.add(lemma)
                    syns.append(lemma)
        if syns:
            out[pos] = syns
    return out


@lru_cache(maxsize=4)
def load_wordnet(path: str | None = None) -> WordNet:
    """The WordNet database, loaded once per process (about a second)."""
    return WordNet(path)
