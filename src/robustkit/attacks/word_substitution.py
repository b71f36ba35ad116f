"""Word-substitution attacks in the PWWS / TextFooler family (Ren et al. 2019; Jin et al. 2020).

Greedy search, batched across examples: every example's words are ranked by importance (the drop in
the true-class probability when the word is deleted, or the gradient norm of its token embeddings),
then in that order each word is replaced by the candidate that flips the prediction (the most
similar such candidate) or lowers the true-class probability most, until the prediction flips or
the budget is spent. All examples advance in lockstep so each round is one batched model query.

Constraints (checked for every accepted substitution, see :func:`check_constraints`):
- stop words (and non-alphabetic tokens) are never changed;
- at most ``max_share`` of an example's words are changed (at least one word unless max_share is 0);
- candidates keep the part of speech where it is known: WordNet synonyms are taken from the synsets
  of a POS the original word has, embedding neighbours must share a WordNet POS with it when WordNet
  knows both words (lexical POS, not a contextual tagger);
- the sentence embedding of the adversarial text has cosine similarity >= ``min_similarity`` with the
  original (``encoder``: the MiniLM sentence encoder by default, or any callable texts -> vectors).
"""
from __future__ import annotations

import functools
import logging
import random
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .._validation import check_choice, check_number
from .base import in_mode
from .discrete import STOP_WORDS, AttackResult, DiscreteAttack, budget, check_constraints, eligible
from .registry import register_attack

__all__ = ["AttackResult", "EmbeddingNeighbours", "GreedyAttack", "STOP_WORDS", "SentenceEncoder",
           "WordSubstitutionAttack", "budget", "check_constraints", "eligible", "word_saliency"]

log = logging.getLogger(__name__)

def _match_case(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    return word.capitalize() if template[:1].isupper() else word


@functools.lru_cache(maxsize=2)
def _load_encoder(name: str):
    from ..models.text import _auto_model_from_pretrained, load_tokenizer, resolve_source
    from transformers import AutoModel
    source = resolve_source(name)
    return _auto_model_from_pretrained(AutoModel, source).eval(), load_tokenizer(source)


class SentenceEncoder:
    """Sentence embeddings by masked mean pooling of a transformer (all-MiniLM-L6-v2's recipe),
    L2-normalized; ``SentenceEncoder.from_name("minilm-l6")`` loads the local MiniLM."""

    def __init__(self, encoder: torch.nn.Module, tokenizer, *, max_length: int = 128, batch_size: int = 64):
        self.encoder, self.tokenizer = encoder.eval(), tokenizer
        self.max_length, self.batch_size = max_length, batch_size

    @classmethod
    def from_name(cls, name: str = "minilm-l6", **kw) -> "SentenceEncoder":
        # An audit creates the word attack once per attack, sweep point and check: load the encoder once.
        encoder, tokenizer = _load_encoder(name)
        return cls(encoder, tokenizer, **kw)

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), self.batch_size):
            b = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
            hidden = self.encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(F.normalize((hidden * m).sum(1) / m.sum(1).clamp_min(1), dim=-1))
        return torch.cat(out) if out else torch.zeros(0)


class _State:
    __slots__ = ("idx", "words", "label", "order", "ptr", "changed", "p_true", "done", "queries", "success", "sim",
                 "rng")

    def __init__(self, idx, words, label, rng):
        self.idx, self.words, self.label, self.rng = idx, list(words), label, rng
        self.order: list[int] = []
        self.ptr, self.changed, self.p_true = 0, [], 1.0
        self.done, self.queries, self.success, self.sim = False, 0, False, None


class GreedyAttack(DiscreteAttack):
    """The shared greedy search; subclasses supply ``candidates(word, state)``.

    ``threat``, ``max_share`` and ``seed`` are :class:`DiscreteAttack`'s.
    """

    def __init__(self, threat=None, *, max_candidates: int = 20, importance: str = "deletion",
                 min_similarity: float | None = None, encoder: Callable | str | None = None,
                 stop_words: Sequence[str] | None = None, batch_size: int = 64, max_queries: int | None = None,
                 **kw):
        super().__init__(threat, **kw)
        self.max_candidates = check_number(max_candidates, "max_candidates", owner=self.name, low=1, integer=True)
        self.importance = check_choice(importance, "importance", ("deletion", "gradient"), owner=self.name)
        if min_similarity is not None:
            min_similarity = check_number(min_similarity, "min_similarity", owner=self.name, low=-1, high=1)
        self.min_similarity = min_similarity
        self._encoder_spec = encoder
        self._encoder: Callable | None = encoder if callable(encoder) else None
        self.stop_words = frozenset(w.lower() for w in stop_words) if stop_words is not None else STOP_WORDS
        self.batch_size = check_number(batch_size, "batch_size", owner=self.name, low=1, integer=True)
        self.max_queries = None if max_queries is None else check_number(max_queries, "max_queries", owner=self.name,
                                                                          low=1, integer=True)

    def params(self) -> dict:
        out = super().params()
        # JSON-safe stand-ins: an encoder object by its class, the default stop list as None.
        spec = self._encoder_spec
        out["encoder"] = spec if spec is None or isinstance(spec, str) else type(spec).__name__
        out["stop_words"] = None if self.stop_words == STOP_WORDS else sorted(self.stop_words)
        return out

    # -- hooks ------------------------------------------------------------------------------------
    def candidates(self, word: str, state: _State) -> list[str]:
        raise NotImplementedError

    def _encoder_fn(self) -> Callable | None:
        if self.min_similarity is None:
            return None
        if self._encoder is None:
            self._encoder = SentenceEncoder.from_name(self._encoder_spec or "minilm-l6")
        return self._encoder

    # -- the search -------------------------------------------------------------------------------
    def _attack(self, model, texts: list[str], labels: list[int], seed: int) -> list[AttackResult]:
        """Attack ``texts`` (true ``labels``) against ``model`` (a TextClassifier); returns one result each."""
        probs0 = self._query(model, list(texts))
        states = [_State(i, t.split(), y, random.Random(seed * 1_000_003 + i))
                  for i, (t, y) in enumerate(zip(texts, labels))]
        for s, p in zip(states, probs0):
            s.queries, s.p_true = 1, float(p[s.label])
            s.done = int(p.argmax()) != s.label
        active = [s for s in states if not s.done]
        self._rank(model, active)
        encoder = self._encoder_fn()
        orig_emb = encoder([texts[s.idx] for s in active]) if encoder and active else None
        emb_row = {s.idx: k for k, s in enumerate(active)}
        while active:
            proposals: list[tuple[_State, int, str]] = []
            for s in active:
                while not s.done:
                    if s.ptr >= len(s.order) or len(s.changed) >= budget(len(s.words), self.max_share) or (
                            self.max_queries is not None and s.queries >= self.max_queries):
                        s.done = True
                        break
                    pos = s.order[s.ptr]
                    s.ptr += 1
                    cands = self.candidates(s.words[pos], s)[: self.max_candidates]
                    if cands:
                        proposals += [(s, pos, _match_case(s.words[pos], c)) for c in cands]
                        break
            if not proposals:
                break
            new_texts = [" ".join(s.words[:pos] + [c] + s.words[pos + 1:]) for s, pos, c in proposals]
            probs = self._query(model, new_texts)
            sims = None
            if encoder is not None:
                emb = encoder(new_texts)
                rows = torch.tensor([emb_row[s.idx] for s, _, _ in proposals])
                sims = (emb * orig_emb[rows]).sum(-1)
            best: dict[int, tuple] = {}
            for k, (s, pos, c) in enumerate(proposals):
                s.queries += 1
                if sims is not None and float(sims[k]) < self.min_similarity:
                    continue
                p_true = float(probs[k, s.label])
                fooled = int(probs[k].argmax()) != s.label
                sim = float(sims[k]) if sims is not None else None
                key = (fooled, sim if (fooled and sim is not None) else -p_true)
                if s.idx not in best or key > best[s.idx][0]:
                    best[s.idx] = (key, pos, c, p_true, fooled, sim, int(probs[k].argmax()))
            for s in {id(s): s for s, _, _ in proposals}.values():
                choice = best.get(s.idx)
                if choice is None:
                    continue
                _, pos, c, p_true, fooled, sim, _pred = choice
                if fooled or p_true < s.p_true:
                    s.changed.append((pos, s.words[pos], c))
                    s.words[pos] = c
                    s.p_true, s.sim = p_true, sim
                    if fooled:
                        s.success = s.done = True
            active = [s for s in active if not s.done]
        return self._results(model, texts, states, probs0)

    def _results(self, model, texts, states, probs0) -> list[AttackResult]:
        out = []
        final_texts = [" ".join(s.words) if s.changed else texts[s.idx] for s in states]
        changed_idx = [k for k, s in enumerate(states) if s.changed]
        final_pred = probs0.argmax(-1).clone()
        if changed_idx:
            final_pred[changed_idx] = self._query(model, [final_texts[k] for k in changed_idx]).argmax(-1)
        for k, s in enumerate(states):
            skipped = int(probs0[k].argmax()) != s.label
            out.append(AttackResult(original=texts[s.idx], adversarial=final_texts[k], label=s.label,
                                    pred_original=int(probs0[k].argmax()), pred_adversarial=int(final_pred[k]),
                                    success=(not skipped) and int(final_pred[k]) != s.label, skipped=skipped,
                                    changed=[list(c) for c in s.changed], n_words=len(s.words), queries=s.queries,
                                    similarity=s.sim))
        return out

    # -- model queries ----------------------------------------------------------------------------
    def _query(self, model, texts: list[str]) -> torch.Tensor:
        return model.predict_proba(texts, batch_size=self.batch_size)

    def _rank(self, model, states: list[_State]) -> None:
        """Fill each state's ``order`` with its eligible positions, most important first."""
        for s in states:
            s.order = [i for i, w in enumerate(s.words) if eligible(w, self.stop_words) and self.candidates(w, s)]
        if self.importance == "deletion":
            jobs = [(s, i) for s in states for i in s.order]
            if not jobs:
                return
            texts = [" ".join(s.words[:i] + s.words[i + 1:]) or "." for s, i in jobs]
            probs = self._query(model, texts)
            score = {}
            for (s, i), p in zip(jobs, probs):
                s.queries += 1
                score[(s.idx, i)] = s.p_true - float(p[s.label])
            for s in states:
                s.order.sort(key=lambda i: -score[(s.idx, i)])
        else:
            for start in range(0, len(states), self.batch_size):
                chunk = states[start:start + self.batch_size]
                saliency = word_saliency(model, [s.words for s in chunk], [s.label for s in chunk])
                for s, sal in zip(chunk, saliency):
                    s.order.sort(key=lambda i: -sal[i])
                    s.queries += 1


def word_saliency(model, words: list[list[str]], labels: list[int]) -> list[list[float]]:
    """Per-word gradient norm of the loss w.r.t. the word's token embeddings (summed over word pieces)."""
    tok = model.tokenizer
    enc = tok(words, is_split_into_words=True, truncation=True, max_length=model.max_length, padding=True,
              return_tensors="pt")
    dev = next(model.parameters()).device
    ids, mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
    # autograd.grad w.r.t. the embeddings only: no parameter .grad is touched.
    with in_mode(model, "eval"), torch.enable_grad():
        emb = model.embed(ids).detach().requires_grad_(True)
        logits = model.forward_embeds(emb, mask)
        loss = F.cross_entropy(logits.float(), torch.tensor(labels, device=dev), reduction="sum")
        (g,) = torch.autograd.grad(loss, emb)
    norms = g.norm(dim=-1).cpu()
    out = []
    for b, ws in enumerate(words):
        sal = [0.0] * len(ws)
        for t, w in enumerate(enc.word_ids(b)):
            if w is not None:
                sal[w] += float(norms[b, t])
        out.append(sal)
    return out


@register_attack("word")
class WordSubstitutionAttack(GreedyAttack):
    """Synonym substitution (PWWS / TextFooler family), greedy by word importance.

    The constraints it keeps are listed in the module docstring.

    ``candidates``: "wordnet" (WordNet synonyms; Debian's ``wordnet-base``), "embedding" (nearest
    neighbours in the victim model's word-embedding space, cosine >= ``min_embedding_cos``) or "both".
    When WordNet is not installed, "wordnet"/"both" fall back to embedding neighbours with a warning.

    Example::

        atk = attacks.create("word", SubstitutionThreat(0.2), min_similarity=0.8)
        adversarial_texts = atk(model, ["a gorgeous , witty film"], [1])
        atk.last_results[0].changed  # [(position, old word, new word), ...]
    """

    def __init__(self, threat=None, *, candidates: str = "wordnet", min_similarity: float | None = 0.8,
                 min_embedding_cos: float = 0.5, wordnet_path: str | None = None, **kw):
        super().__init__(threat, min_similarity=min_similarity, **kw)
        self.source = check_choice(candidates, "candidates", ("wordnet", "embedding", "both"), owner="word")
        self.min_embedding_cos = check_number(min_embedding_cos, "min_embedding_cos", owner="word", low=-1, high=1)
        self.wordnet_path = wordnet_path
        self._wn = None
        if self.source in ("wordnet", "both"):
            from ..data.wordnet import load_wordnet
            try:
                self._wn = load_wordnet(wordnet_path)
            except FileNotFoundError as err:
                log.warning("%s Falling back to embedding-space neighbours.", err)
                self.source = "embedding"
        self._neigh = None
        self._cache: dict[str, list[str]] = {}

    def params(self) -> dict:
        return {**super().params(), "candidates": self.source}  # the attribute name is taken by the method

    def _attack(self, model, texts, labels, seed):
        if self.source in ("embedding", "both") and (self._neigh is None or self._neigh.model is not model):
            self._neigh = EmbeddingNeighbours(model, min_cos=self.min_embedding_cos)
            self._cache.clear()
        return super()._attack(model, texts, labels, seed)

    def candidates(self, word: str, state=None) -> list[str]:
        w = word.lower()
        if w in self._cache:
            return self._cache[w]
        out: list[str] = []
        wn_pos = self._wn.pos_of(w) if self._wn is not None else set()
        if self._wn is not None and self.source in ("wordnet", "both"):
            syns = self._wn.synonyms(w)
            # interleave POS lists so a capped list still covers every sense class the word has
            lists = [syns[p] for p in ("a", "v", "n", "r") if p in syns]
            for k in range(max((len(v) for v in lists), default=0)):
                out += [v[k] for v in lists if k < len(v) and v[k] not in out]
        if self._neigh is not None and self.source in ("embedding", "both"):
            for c in self._neigh(w, self.max_candidates):
                if c in out or c == w or c in self.stop_words:
                    continue
                if self._wn is not None and wn_pos:
                    cpos = self._wn.pos_of(c)
                    if cpos and not (cpos & wn_pos):
                        continue  # POS known for both and disjoint
                out.append(c)
        out = [c for c in out if c != w and c not in self.stop_words]
        self._cache[w] = out
        return out


class EmbeddingNeighbours:
    """Nearest whole-word neighbours in a model's word-embedding matrix (cosine similarity)."""

    def __init__(self, model, *, min_cos: float = 0.5):
        self.model = model
        vocab = model.tokenizer.get_vocab()
        words = [(w, i) for w, i in vocab.items() if w.isalpha() and len(w) > 1]
        self.words = [w for w, _ in words]
        self.index = {w: k for k, w in enumerate(self.words)}
        weight = model.embedding_layer().weight.detach().float().cpu()
        self.vectors = F.normalize(weight[torch.tensor([i for _, i in words], dtype=torch.long)], dim=-1)
        self.min_cos = min_cos

    def __call__(self, word: str, k: int) -> list[str]:
        row = self.index.get(word)
        if row is None:
            return []
        sims = self.vectors @ self.vectors[row]
        top = torch.topk(sims, min(k + 1, len(self.words)))
        return [self.words[j] for s, j in zip(top.values.tolist(), top.indices.tolist())
                if j != row and s >= self.min_cos][:k]
