"""Synonym-hull adversarial training: ASCC (Dong et al., ICLR 2021) and DNE (Zhou et al., ACL 2021).

Why not a generic Lp ball: FreeLB/SMART perturb every token embedding inside a ball that holds
almost no real word, so they mostly regularize; the word attack moves *to other words*. Here each
word's perturbation set is the convex hull of the embeddings of the word itself and its synonym
candidates -- the same candidate sets the word attack and SAFER certification use
(:mod:`robustkit.data.synonyms`), so threat model and defence agree -- and the inner maximization
searches the convex-combination weights of every word at once:

    x_hat_j = sum_k w_jk * e(s_jk),   w_j in the simplex over {word_j} + candidates(word_j)

``method: ascc``: weights start uniform (logits 0) and ``steps`` ascent steps on the logits of a
softmax parametrization raise ``KL(f(x) || f(x_hat))`` (``loss: kl``, ASCC's TRADES-style term) or
``CE(f(x_hat), y)`` (``loss: ce``), minus ``sparsity`` times the weights' entropy: ASCC's regularizer
that pushes each word's weights toward a vertex, i.e. toward a real substitution.
``method: dne``: the same ascent from a random start, weights drawn from a Dirichlet distribution
(``concentration``) with the original word weighted ``self_weight`` times more (DNE's sampled
neighbourhood around the original rather than the whole hull).

Outer loss: ``CE(f(x), y) + beta * KL(f(x) || f(x_hat))`` (kl) or ``CE(f(x), y) + beta * CE(f(x_hat), y)``
(ce). Batches must carry raw texts (``needs_raw_inputs``). Word pieces: a word enters the hull only
when it is a single token of the model's vocabulary, and only single-token candidates are vertices
(the hull lives at one token position); other words stay as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._validation import check_choice, check_number
from .base import Objective, _acc, crafting_model, register_objective
from ...data.synonyms import match_case as _match_case


class _HullVocabulary:
    """word -> token ids of the word and its single-token candidates (cached per word)."""

    def __init__(self, tokenizer, candidates, max_candidates: int):
        self.tokenizer, self.vocab = tokenizer, tokenizer.get_vocab()
        # An uncased vocabulary (BERT-uncased, MiniLM) holds no capitalized word: look words up lower-cased.
        self.lower = not any(t[:1].isupper() for t in self.vocab)
        self.candidates, self.max_candidates = candidates, max_candidates
        self._cache: dict[str, list[int]] = {}

    def _id(self, word: str) -> int | None:
        return self.vocab.get(word.lower() if self.lower else word)

    def __call__(self, word: str) -> list[int]:
        out = self._cache.get(word)
        if out is None:
            own = self._id(word)
            out = []
            if own is not None:
                out = [own]
                for c in self.candidates(word):
                    cid = self._id(c if self.lower else _match_case(word, c))
                    if cid is not None and cid not in out:
                        out.append(cid)
                        if len(out) > self.max_candidates:
                            break
            self._cache[word] = out
        return out


class _Hull(Objective):
    needs_threat = False
    modalities = ("text",)
    select_best_by = "clean"
    needs_raw_inputs = True
    random_init = False

    def __init__(self, threat=None, *, steps: int = 3, step_size: float = 1.0, beta: float = 4.0, loss: str = "kl",
                 sparsity: float = 0.1, max_candidates: int = 16, concentration: float = 1.0, self_weight: float = 4.0,
                 wordnet_path: str | None = None, **kw):
        super().__init__(threat, **kw)
        owner = self.name
        self.steps = check_number(steps, "steps", owner=owner, low=0, integer=True)
        self.step_size = check_number(step_size, "step_size", owner=owner, low=0, low_inclusive=False)
        self.beta = check_number(beta, "beta", owner=owner, low=0)
        self.loss = check_choice(loss, "loss", ("kl", "ce"), owner=owner)
        self.sparsity = check_number(sparsity, "sparsity", owner=owner, low=0)
        self.max_candidates = check_number(max_candidates, "max_candidates", owner=owner, low=1, integer=True)
        self.concentration = check_number(concentration, "concentration", owner=owner, low=0, low_inclusive=False)
        self.self_weight = check_number(self_weight, "self_weight", owner=owner, low=0, low_inclusive=False)
        self.wordnet_path = wordnet_path
        self._hull_vocab = None

    # -- the hull of every token position ---------------------------------------------------------
    def _vocab(self, model) -> _HullVocabulary:
        if self._hull_vocab is None or self._hull_vocab.tokenizer is not model.tokenizer:
            # Imported here: WordNet and the candidate tables load only for a run that uses them.
            from ...attacks.discrete import STOP_WORDS
            from ...data.synonyms import synonym_candidates
            cands = synonym_candidates(wordnet_path=self.wordnet_path, stop_words=STOP_WORDS)
            self._hull_vocab = _HullVocabulary(model.tokenizer, cands, self.max_candidates)
        return self._hull_vocab

    def hull(self, model, texts: list[str], device) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """Inputs for ``texts``, vertex token ids (N, L, K) with slot 0 the token itself, and their mask."""
        from ...attacks.discrete import STOP_WORDS, eligible
        words = [t.split() for t in texts]
        inputs, word_ids = model.encode_words(words, device=device)
        ids = inputs["input_ids"]
        vocab = self._vocab(model)
        rows: list[tuple[int, int, list[int]]] = []
        for b, wid in enumerate(word_ids):
            counts: dict[int, int] = {}
            for w in wid:
                if w is not None:
                    counts[w] = counts.get(w, 0) + 1
            for t, w in enumerate(wid):
                if w is None or counts[w] != 1 or not eligible(words[b][w], STOP_WORDS):
                    continue
                verts = vocab(words[b][w])
                if len(verts) > 1 and verts[0] == int(ids[b, t]):
                    rows.append((b, t, verts))
        k = max((len(v) for _, _, v in rows), default=1)
        verts = ids.unsqueeze(-1).repeat(1, 1, k)
        mask = torch.zeros(*ids.shape, k, dtype=torch.bool, device=ids.device)
        mask[..., 0] = True
        for b, t, v in rows:
            verts[b, t, : len(v)] = torch.tensor(v, device=ids.device)
            mask[b, t, : len(v)] = True
        return inputs, verts, mask

    def _init_logits(self, mask: torch.Tensor) -> torch.Tensor:
        if not self.random_init:
            return torch.zeros(mask.shape, device=mask.device)
        alpha = torch.full(mask.shape, self.concentration)
        alpha[..., 0] *= self.self_weight
        # Dirichlet(alpha) = normalized Gamma(alpha) draws (the softmax normalizes). Gamma sampling takes
        # no generator, so it runs on a forked global stream seeded per batch: reproducible, and the
        # training's own random stream (dropout, shuffling) is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._next_seed())
            g = torch.distributions.Gamma(alpha, torch.ones_like(alpha)).sample()
        return torch.log(g.clamp_min(1e-12)).to(mask.device)

    @staticmethod
    def _weights(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)

    def _inner(self, logits_adv, clean_prob, y):
        if self.loss == "kl":
            return F.kl_div(F.log_softmax(logits_adv, -1), clean_prob, reduction="batchmean")
        return F.cross_entropy(logits_adv, y)

    def __call__(self, model, x, y, *, eps=None):
        if not isinstance(x, dict) or "texts" not in x:
            raise ValueError(f"The {self.name!r} method needs the raw texts in each batch (inputs['texts']); build "
                             "batches with robustkit.data.text.text_batches(..., with_texts=True).")
        bare = crafting_model(model)
        device = y.device
        inputs, verts, mask = self.hull(bare, list(x["texts"]), device)
        with torch.no_grad():
            vert_emb = bare.embed(verts)  # (N, L, K, D)
            own = vert_emb[..., 0, :]
        w_logits = self._init_logits(mask)
        logits = model(inputs)
        clean_prob = torch.softmax(logits.detach().float(), -1)
        movable = mask[..., 1:].any(-1)
        was = bare.training
        if self.attack_mode == "eval":
            bare.eval()
        try:
            for _ in range(self.steps if bool(movable.any()) else 0):
                w_logits.requires_grad_(True)
                w = self._weights(w_logits, mask)
                delta = (w.unsqueeze(-1) * vert_emb).sum(-2) - own
                adv = bare(inputs, delta=delta)
                ent = -(w * torch.log(w.clamp_min(1e-12))).sum(-1)[movable].mean()
                obj = self._inner(adv.float(), clean_prob, y) - self.sparsity * ent
                (g,) = torch.autograd.grad(obj, w_logits)
                w_logits = (w_logits.detach() + self.step_size * g.sign()).masked_fill(~mask, 0.0)
        finally:
            bare.train(was)
        with torch.no_grad():
            w = self._weights(w_logits.detach(), mask)
            delta = (w.unsqueeze(-1) * vert_emb).sum(-2) - own
        logits_adv = model(inputs, delta=delta)
        clean_loss = F.cross_entropy(logits, y)
        if self.loss == "kl":
            adv_term = F.kl_div(F.log_softmax(logits_adv.float(), -1), torch.softmax(logits.float(), -1),
                                reduction="batchmean")
        else:
            adv_term = F.cross_entropy(logits_adv, y)
        stats = {"clean_acc": _acc(logits, y), "adv_acc": _acc(logits_adv, y),
                 "hull_words": float(movable.sum()) / max(1, len(y)),
                 "mean_vertices": float(mask[movable].sum(-1).float().mean()) if bool(movable.any()) else 1.0}
        return clean_loss + self.beta * adv_term, stats


@register_objective("ascc")
class ASCC(_Hull):
    """ASCC (Dong et al. 2021): adversarial weights over the convex hull of each word's synonyms,
    from the hull's centre; see the module docstring for the parameters."""


@register_objective("dne")
class DNE(_Hull):
    """DNE (Zhou et al. 2021): the synonym-hull adversary from a Dirichlet-sampled start around the
    original word; see the module docstring for the parameters."""

    random_init = True
