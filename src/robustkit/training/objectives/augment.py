"""Adversarial data augmentation with word substitutions (A2T, Yoo & Qi 2021)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._validation import check_number
from .base import Objective, _acc, crafting_model, register_objective
from .embed_pgd import _model_inputs


@register_objective("augment")
class Augment(Objective):
    """Adversarial data augmentation with word substitutions (A2T, Yoo & Qi 2021): each batch, a
    seeded ``share`` of the examples is attacked with a cheap word-substitution attack (gradient
    word importance, few candidates, no sentence-encoder check by default) and the loss is
    ``CE(clean batch) + lam · CE(adversarial examples)``. Batches must carry their raw texts under
    ``"texts"`` (``needs_raw_inputs``: ``text_batches(..., with_texts=True)``).

    ``attack_args`` go to :class:`~robustkit.attacks.word_substitution.WordSubstitutionAttack`.
    """

    needs_threat = False
    modalities = ("text",)
    select_best_by = "clean"
    needs_raw_inputs = True

    def __init__(self, threat=None, *, share: float = 0.5, lam: float = 1.0, attack_args: dict | None = None,
                 **kw):
        super().__init__(threat, **kw)
        self.share = check_number(share, "share", owner="augment", low=0, high=1)
        self.lam = check_number(lam, "lam", owner="augment", low=0)
        self.attack_args = {"importance": "gradient", "max_candidates": 8, "min_similarity": None,
                            **dict(attack_args or {})}
        self._word = None

    def _word_attack(self):
        if self._word is None:
            # Imported here: the word attack pulls in text dependencies only a text run needs.
            from ...attacks.word_substitution import WordSubstitutionAttack
            self._word = WordSubstitutionAttack(**self.attack_args)
        return self._word

    def __call__(self, model, x, y, *, eps=None):
        if not isinstance(x, dict) or "texts" not in x:
            raise ValueError("The 'augment' method needs the raw texts in each batch (inputs['texts']); build "
                             "batches with robustkit.data.text.text_batches(..., with_texts=True).")
        texts = list(x["texts"])
        inputs = _model_inputs(x)
        seed = self._next_seed()
        g = torch.Generator().manual_seed(seed)
        n_adv = int(round(self.share * len(texts)))
        pick = torch.randperm(len(texts), generator=g)[:n_adv].tolist()
        bare = crafting_model(model)
        logits = model(inputs)
        loss = F.cross_entropy(logits, y)
        stats = {"clean_acc": _acc(logits, y)}
        if pick:
            yp = y[pick]
            results = self._word_attack().attack(bare, [texts[i] for i in pick], yp.cpu().tolist(), seed=seed)
            adv_inputs = bare.encode([r.adversarial for r in results], device=y.device)
            logits_adv = model(adv_inputs)
            loss = loss + self.lam * F.cross_entropy(logits_adv, yp)
            stats.update({"adv_acc": _acc(logits_adv, yp),
                          "attack_success": sum(r.success for r in results) / len(results)})
        return loss, stats
