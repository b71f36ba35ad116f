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
from ..data.synonyms import match_case as _match_case

__all__ = ["AttackResult", "EmbeddingNeighbours", "GreedyAttack", "STOP_WORDS", "SentenceEncoder",
           "WordSubstitutionAttack", "budget", "check_constraints", "eligible", "word_saliency"]

log = logging.getLogger(__name__)


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


class _Hyp:
    """One partial adversarial text of a beam: its words, substitutions so far, true-class probability."""
    __slots__ = ("words", "changed", "p_true", "sim")

    def __init__(self, words, changed, p_true, sim=None):
        self.words, self.changed, self.p_true, self.sim = words, changed, p_true, sim


class _State:
    __slots__ = ("idx", "words", "label", "order", "ptr", "beam", "done", "queries", "success", "rng", "seen")

    def __init__(self, idx, words, label, rng):
        self.idx, self.words, self.label, self.rng = idx, list(words), label, rng
        self.order: list[int] = []
        self.ptr = 0
        self.beam = [_Hyp(list(words), [], 1.0)]
        self.done, self.queries, self.success = False, 0, False
        self.seen: set[str] = set()  # texts this example has queried (each counted once)


class GreedyAttack(DiscreteAttack):
    """The shared search; subclasses supply ``candidates(word, state)``.

    Words are visited in order of importance; at each word every candidate of every hypothesis in
    the beam is scored in one batched query; the first candidate that flips the prediction (the most
    similar one when several do) ends the search, otherwise the ``beam_width`` texts with the lowest
    true-class probability go on (``beam_width=1`` is the greedy search of PWWS/TextFooler; wider
    beams recover from a greedy choice that leads nowhere, at beam_width times the queries).

    ``importance``: "deletion" (drop in the true-class probability when the word is deleted, one query
    per word), "gradient" (norm of the loss gradient at the word's token embeddings: one backward pass
    for all words, A2T's cheap ranking) or "pwws" (Ren et al. 2019: softmax of the drop when the word is
    replaced by the unknown token, times the largest drop its best substitute achieves; one query per
    word and candidate, the priciest and most informed ranking) or "taylor" (each word ranked by its
    best substitute's first-order loss increase, :func:`substitution_gains`: one backward pass).

    ``rerank=k`` re-orders the first k words of that ranking by the drop in the true-class probability
    their best substitute really achieves (k x candidates queries, which the search's first step then
    finds cached). With a budget of 2-3 words in an SST-2 sentence, spending it on the words whose
    substitutes hurt most matters more than the search: on SST-2 dev, gradient greedy followed by a
    rerank-12 greedy on its survivors leaves fewer sentences correct than PWWS at about half its time.

    Model queries are cached per call (a text is scored once), and the sentence-similarity constraint
    is checked lazily: only for candidates that flip the prediction and the few best of the rest.
    ``threat``, ``max_share`` and ``seed`` are :class:`DiscreteAttack`'s.
    """

    def __init__(self, threat=None, *, max_candidates: int = 20, importance: str = "deletion",
                 min_similarity: float | None = None, encoder: Callable | str | None = None,
                 stop_words: Sequence[str] | None = None, batch_size: int = 64, max_queries: int | None = None,
                 beam_width: int = 1, rerank: int = 0, **kw):
        super().__init__(threat, **kw)
        self.max_candidates = check_number(max_candidates, "max_candidates", owner=self.name, low=1, integer=True)
        self.importance = check_choice(importance, "importance", ("deletion", "gradient", "pwws", "taylor"),
                                       owner=self.name)
        if min_similarity is not None:
            min_similarity = check_number(min_similarity, "min_similarity", owner=self.name, low=-1, high=1)
        self.min_similarity = min_similarity
        self._encoder_spec = encoder
        self._encoder: Callable | None = encoder if callable(encoder) else None
        self.stop_words = frozenset(w.lower() for w in stop_words) if stop_words is not None else STOP_WORDS
        self.batch_size = check_number(batch_size, "batch_size", owner=self.name, low=1, integer=True)
        self.max_queries = None if max_queries is None else check_number(max_queries, "max_queries", owner=self.name,
                                                                          low=1, integer=True)
        self.beam_width = check_number(beam_width, "beam_width", owner=self.name, low=1, integer=True)
        self.rerank = check_number(rerank, "rerank", owner=self.name, low=0, integer=True)

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
        self._cache: dict[str, torch.Tensor] = {}
        states = [_State(i, t.split(), y, random.Random(seed * 1_000_003 + i))
                  for i, (t, y) in enumerate(zip(texts, labels))]
        probs0 = self._score(model, [(s, texts[s.idx]) for s in states])
        for s, p in zip(states, probs0):
            s.beam[0].p_true = float(p[s.label])
            s.done = int(p.argmax()) != s.label
        active = [s for s in states if not s.done]
        self._rank(model, active)
        encoder = self._encoder_fn()
        self._orig_emb = encoder([texts[s.idx] for s in active]) if encoder and active else None
        self._emb_row = {s.idx: k for k, s in enumerate(active)}
        while active:
            proposals: list[tuple[_State, _Hyp, int, str]] = []
            for s in active:
                proposals += self._expand(s)
            if not proposals:
                break
            self._step(model, proposals, encoder)
            active = [s for s in active if not s.done]
        try:
            return self._results(model, texts, states, probs0)
        finally:
            self._cache = {}

    def _expand(self, s: _State) -> list[tuple]:
        """The next position's substitutions for every hypothesis of ``s`` that has budget left."""
        limit = budget(len(s.words), self.max_share)
        while not s.done:
            open_hyps = [h for h in s.beam if len(h.changed) < limit]
            if s.ptr >= len(s.order) or not open_hyps or (self.max_queries is not None and s.queries >= self.max_queries):
                s.done = True
                break
            pos = s.order[s.ptr]
            s.ptr += 1
            cands = self.candidates(s.words[pos], s)[: self.max_candidates]
            if cands:
                return [(s, h, pos, _match_case(s.words[pos], c)) for h in open_hyps for c in cands]
        return []

    def _step(self, model, proposals, encoder) -> None:
        new_texts = [" ".join(h.words[:pos] + [c] + h.words[pos + 1:]) for _, h, pos, c in proposals]
        probs = self._score(model, [(s, t) for (s, _, _, _), t in zip(proposals, new_texts)])
        by_state: dict[int, list] = {}
        for k, (s, h, pos, c) in enumerate(proposals):
            fooled = int(probs[k].argmax()) != s.label
            by_state.setdefault(s.idx, [s, []])[1].append((k, fooled, float(probs[k, s.label])))
        # Similarity only where it decides: every candidate that flips the prediction, and the
        # beam_width + 2 best of the others (their order is known before the encoder runs).
        need = []
        for s, rows in by_state.values():
            need += [k for k, fooled, _ in rows if fooled]
            need += [k for k, _, _ in sorted((r for r in rows if not r[1]), key=lambda r: r[2])[: self.beam_width + 2]]
        sims = {}
        if encoder is not None and need:
            emb = encoder([new_texts[k] for k in need])
            rows_ = torch.tensor([self._emb_row[proposals[k][0].idx] for k in need])
            sims = dict(zip(need, (emb * self._orig_emb[rows_]).sum(-1).tolist()))
        ok = (lambda k: k in sims and sims[k] >= self.min_similarity) if encoder is not None else (lambda k: True)
        for s, rows in by_state.values():
            wins = [(sims.get(k, 1.0), k) for k, fooled, _ in rows if fooled and ok(k)]
            if wins:
                _, k = max(wins)
                s.beam = [self._child(proposals[k], float(probs[k, s.label]), sims.get(k))]
                s.success = s.done = True
                continue
            children = [self._child(proposals[k], p, sims.get(k)) for k, fooled, p in rows if not fooled and ok(k)]
            # The unchanged hypotheses stay candidates: a position whose best substitute does not lower
            # the true-class probability is skipped (greedy PWWS/TextFooler behaviour at width 1).
            pool = sorted(s.beam + children, key=lambda h: h.p_true)
            s.beam = pool[: self.beam_width]

    @staticmethod
    def _child(proposal, p_true, sim) -> _Hyp:
        _, h, pos, c = proposal
        words = list(h.words)
        words[pos] = c
        return _Hyp(words, h.changed + [(pos, h.words[pos], c)], p_true, sim)

    def _results(self, model, texts, states, probs0) -> list[AttackResult]:
        out = []
        best = [s.beam[0] for s in states]  # success: the flipping text; otherwise the lowest p_true
        final_texts = [" ".join(h.words) if h.changed else texts[s.idx] for s, h in zip(states, best)]
        final_pred = torch.stack([self._cache[t] for t in final_texts]).argmax(-1) if states else probs0.argmax(-1)
        for k, (s, h) in enumerate(zip(states, best)):
            skipped = int(probs0[k].argmax()) != s.label
            out.append(AttackResult(original=texts[s.idx], adversarial=final_texts[k], label=s.label,
                                    pred_original=int(probs0[k].argmax()), pred_adversarial=int(final_pred[k]),
                                    success=(not skipped) and int(final_pred[k]) != s.label, skipped=skipped,
                                    changed=[list(c) for c in h.changed], n_words=len(s.words), queries=s.queries,
                                    similarity=h.sim))
        return out

    # -- model queries ----------------------------------------------------------------------------
    def _score(self, model, jobs: list[tuple[_State, str]]) -> torch.Tensor:
        """Class probabilities of each job's text; each distinct text is sent to the model once per call
        and counts as one query of each example that asks for it."""
        todo = list(dict.fromkeys(t for _, t in jobs if t not in self._cache))
        if todo:
            for t, p in zip(todo, self._query(model, todo)):
                self._cache[t] = p
        for s, t in jobs:
            if t not in s.seen:
                s.seen.add(t)
                s.queries += 1
        return torch.stack([self._cache[t] for _, t in jobs]) if jobs else torch.zeros(0)

    def _query(self, model, texts: list[str]) -> torch.Tensor:
        # Batches of similar length waste little on padding (a transformer's cost grows with the
        # longest text of a batch); the answers go back in the callers' order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs = model.predict_proba([texts[i] for i in order], batch_size=self.batch_size)
        out = torch.empty_like(probs)
        out[torch.tensor(order, dtype=torch.long)] = probs
        return out

    def _subs(self, s: _State, i: int) -> list[str]:
        return [_match_case(s.words[i], c) for c in self.candidates(s.words[i], s)[: self.max_candidates]]

    def _rank(self, model, states: list[_State]) -> None:
        """Fill each state's ``order`` with its eligible positions, most important first; with ``rerank``
        the first ``rerank`` of them are re-ordered by the drop their best substitute really achieves."""
        self._rank_order(model, states)
        if self.rerank:
            self._rerank(model, states)

    def _rerank(self, model, states: list[_State]) -> None:
        # PWWS's criterion (the best single substitute's drop in the true-class probability) measured
        # where it is most likely to matter only: rerank x candidates queries instead of words x
        # candidates. The greedy's first step then finds these texts in the query cache.
        best = self._best_drops(model, states, self.rerank)
        for s in states:
            head = sorted(s.order[: self.rerank], key=lambda i: -best.get((s.idx, i), -1.0))
            s.order = head + s.order[self.rerank:]

    def _best_drops(self, model, states: list[_State], limit: int | None = None) -> dict[tuple, float]:
        """(state, position) -> the largest drop in the true-class probability a single substitute of that
        word achieves, for the first ``limit`` positions of each state's order (all when None)."""
        jobs = [(s, i, " ".join(s.words[:i] + [c] + s.words[i + 1:]))
                for s in states for i in s.order[:limit] for c in self._subs(s, i)]
        probs = self._score(model, [(s, t) for s, _, t in jobs]) if jobs else []
        best: dict[tuple, float] = {}
        for (s, i, _), p in zip(jobs, probs):
            best[(s.idx, i)] = max(best.get((s.idx, i), -1.0), s.beam[0].p_true - float(p[s.label]))
        return best

    def _rank_order(self, model, states: list[_State]) -> None:
        for s in states:
            s.order = [i for i, w in enumerate(s.words) if eligible(w, self.stop_words) and self.candidates(w, s)]
        if self.importance == "taylor":
            for start in range(0, len(states), self.batch_size):
                chunk = states[start:start + self.batch_size]
                gains = substitution_gains(model, [s.words for s in chunk], [s.label for s in chunk],
                                           [{i: self._subs(s, i) for i in s.order} for s in chunk])
                for s, g in zip(chunk, gains):
                    best = {i: max(g[i]) if g[i] else float("-inf") for i in s.order}
                    s.order.sort(key=lambda i: -best[i])
                    s.queries += 1
            return
        if self.importance == "gradient":
            for start in range(0, len(states), self.batch_size):
                chunk = states[start:start + self.batch_size]
                saliency = word_saliency(model, [s.words for s in chunk], [s.label for s in chunk])
                for s, sal in zip(chunk, saliency):
                    s.order.sort(key=lambda i: -sal[i])
                    s.queries += 1
            return
        unk = getattr(getattr(model, "tokenizer", None), "unk_token", None) or "[UNK]"
        filler = [] if self.importance == "deletion" else [unk]
        jobs = [(s, i, " ".join(s.words[:i] + filler + s.words[i + 1:]) or ".") for s in states for i in s.order]
        probs = self._score(model, [(s, t) for s, _, t in jobs]) if jobs else []
        drop = {(s.idx, i): s.beam[0].p_true - float(p[s.label]) for (s, i, _), p in zip(jobs, probs)}
        if self.importance == "pwws":
            # Ren et al. 2019, eq. 8: softmax(word saliency) x the best substitute's drop (constraint-free,
            # as in the paper's ranking; the search below enforces the constraints).
            best_drop = self._best_drops(model, states)
            for s in states:
                if not s.order:
                    continue
                soft = torch.softmax(torch.tensor([drop[(s.idx, i)] for i in s.order]), 0).tolist()
                score = {i: w * best_drop.get((s.idx, i), 0.0) for i, w in zip(s.order, soft)}
                s.order.sort(key=lambda i: -score[i])
        else:
            for s in states:
                s.order.sort(key=lambda i: -drop[(s.idx, i)])


def _token_gradients(model, words: list[list[str]], labels: list[int]):
    """Loss gradient at every token embedding, the token ids and each token's word (pair-aware)."""
    dev = next(model.parameters()).device
    if hasattr(model, "encode_words"):  # pair-aware alignment (text ||| text_pair)
        enc, word_ids = model.encode_words(words, device=dev)
    else:
        enc = model.tokenizer(words, is_split_into_words=True, truncation=True, max_length=model.max_length,
                              padding=True, return_tensors="pt")
        word_ids = [enc.word_ids(b) for b in range(len(words))]
        enc = {k: v.to(dev) for k, v in enc.items()}
    ids, mask = enc["input_ids"], enc["attention_mask"]
    # autograd.grad w.r.t. the embeddings only: no parameter .grad is touched.
    with in_mode(model, "eval"), torch.enable_grad():
        emb = model.embed(ids).detach().requires_grad_(True)
        logits = model.forward_embeds(emb, mask, enc.get("token_type_ids"))
        loss = F.cross_entropy(logits.float(), torch.tensor(labels, device=dev), reduction="sum")
        (g,) = torch.autograd.grad(loss, emb)
    return g, ids, word_ids


def substitution_gains(model, words: list[list[str]], labels: list[int],
                       subs: list[dict[int, list[str]]]) -> list[dict[int, list[float]]]:
    """First-order estimate of the loss increase of each single substitution (HotFlip's Taylor term).

    ``subs[b][i]`` lists candidate words for position ``i`` of text ``b``; the estimate for candidate c is
    ``(E[c] - E[w]) . dL/dE[w]`` summed over word pieces, or with mean-pooled pieces when c and w split into
    different numbers of pieces. One backward pass for the whole batch, no model query: it ranks words
    by what their best substitute is likely to do (PWWS's criterion) at the price of a gradient.
    """
    if len(subs) != len(words) or len(labels) != len(words):
        raise ValueError(f"The 'subs' and 'labels' parameters of substitution_gains must have one entry per text "
                         f"of 'words' ({len(words)}). Got {len(subs)} and {len(labels)}.")
    g, ids, word_ids = _token_gradients(model, words, labels)
    table = model.embedding_layer().weight
    tok = model.tokenizer
    word_map = getattr(model, "word_map", None)
    piece_cache: dict[str, list[int]] = {}

    def pieces(w: str) -> list[int]:
        if w not in piece_cache:
            mapped = word_map.word(w) if word_map is not None else w
            piece_cache[w] = tok(mapped, add_special_tokens=False)["input_ids"] or [tok.unk_token_id]
        return piece_cache[w]

    out = []
    with torch.no_grad():
        for b in range(len(words)):
            where: dict[int, list[int]] = {}
            for t, w in enumerate(word_ids[b]):
                if w is not None:
                    where.setdefault(w, []).append(t)
            row: dict[int, list[float]] = {}
            for i, cands in subs[b].items():
                ts = where.get(i)
                if not ts:  # truncated away: the word cannot matter
                    row[i] = [float("-inf")] * len(cands)
                    continue
                gw, ew = g[b, ts].float(), table[ids[b, ts]].float()
                est = []
                for c in cands:
                    q = pieces(c)
                    ec = table[torch.tensor(q, device=table.device)].float()
                    if len(q) == len(ts):
                        est.append(float(((ec - ew) * gw).sum()))
                    else:
                        est.append(float((ec.mean(0) - ew.mean(0)) @ gw.sum(0)))
                row[i] = est
            out.append(row)
    return out


def word_saliency(model, words: list[list[str]], labels: list[int]) -> list[list[float]]:
    """Per-word gradient norm of the loss w.r.t. the word's token embeddings (summed over word pieces)."""
    g, _, word_ids = _token_gradients(model, words, labels)
    norms = g.norm(dim=-1).cpu()
    out = []
    for b, ws in enumerate(words):
        sal = [0.0] * len(ws)
        for t, w in enumerate(word_ids[b]):
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
                 min_embedding_cos: float = 0.5, wordnet_path: str | None = None, inflect: bool = True, **kw):
        super().__init__(threat, min_similarity=min_similarity, **kw)
        self.source = check_choice(candidates, "candidates", ("wordnet", "embedding", "both"), owner="word")
        self.min_embedding_cos = check_number(min_embedding_cos, "min_embedding_cos", owner="word", low=-1, high=1)
        self.wordnet_path = wordnet_path
        self.inflect = bool(inflect)
        self._wn = self._syn = None
        if self.source in ("wordnet", "both"):
            from ..data.synonyms import synonym_candidates
            from ..data.wordnet import load_wordnet
            try:
                self._wn = load_wordnet(wordnet_path)
                # Lemma lookup + re-inflection, shared with the synonym-hull objectives and SAFER certify.
                self._syn = synonym_candidates(wordnet_path=wordnet_path, stop_words=self.stop_words,
                                               inflect=self.inflect)
            except FileNotFoundError as err:
                log.warning("%s Falling back to embedding-space neighbours.", err)
                self.source = "embedding"
        self._neigh = None
        self._cache_words: dict[str, list[str]] = {}

    def params(self) -> dict:
        return {**super().params(), "candidates": self.source}  # the attribute name is taken by the method

    def _attack(self, model, texts, labels, seed):
        if self.source in ("embedding", "both") and (self._neigh is None or self._neigh.model is not model):
            self._neigh = EmbeddingNeighbours(model, min_cos=self.min_embedding_cos)
            self._cache_words.clear()
        return super()._attack(model, texts, labels, seed)

    def candidates(self, word: str, state=None) -> list[str]:
        w = word.lower()
        if w in self._cache_words:
            return self._cache_words[w]
        out: list[str] = list(self._syn(w)) if self._syn is not None else []
        if self._neigh is not None and self.source in ("embedding", "both"):
            wn_pos = self._wn.pos_of(w) if self._wn is not None else set()
            for c in self._neigh(w, self.max_candidates):
                if c in out or c == w or c in self.stop_words:
                    continue
                if self._wn is not None and wn_pos:
                    cpos = self._wn.pos_of(c)
                    if cpos and not (cpos & wn_pos):
                        continue  # POS known for both and disjoint
                out.append(c)
        out = [c for c in out if c != w and c not in self.stop_words]
        self._cache_words[w] = out
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
