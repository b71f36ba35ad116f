"""PGD in embedding space, and the base of the embedding-perturbation text objectives.

Text objectives map ``(model, inputs, y) -> (loss, stats)`` where ``inputs`` is a dict of token
tensors. Embedding-space radii are relative to the embedding scale (see
:mod:`robustkit.modality.embedding`). Nothing here imports transformers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._validation import check_number
from ...modality import embedding
from .base import Objective, _acc, crafting_model, optional_step_size, register_objective


def _model_inputs(x: dict) -> dict:
    """The token tensors of a text batch (drops raw texts and other non-tensor entries)."""
    return {k: v for k, v in x.items() if isinstance(v, torch.Tensor)}


class _TextObjective(Objective):
    modalities = ("text",)
    select_best_by = "clean"  # text validation has no robust metric

    def _generator(self, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self._next_seed())

    def _craft(self, model, x, loss_fn, eps, steps, step_size, random_start, init_scale=1.0):
        bare = crafting_model(model)
        was = bare.training
        if self.attack_mode == "eval":
            bare.eval()
        try:
            return embedding.embedding_pgd(bare, x, self._threat(eps), loss_fn, steps=steps, step_size=step_size,
                                           random_start=random_start,
                                           generator=self._generator(x["input_ids"].device), init_scale=init_scale)
        finally:
            bare.train(was)


@register_objective("embed-pgd")
class EmbedPGD(_TextObjective):
    """PGD in embedding space (Miyato et al. 2017 style adversarial training, with PGD as in Madry et al.
    2018): ``clean + lam · adv``, the perturbation crafted by ``steps`` projected steps on the word
    embeddings (norm per example, eps and step size relative to the embedding scale).

    ``step_size`` defaults to 2.5·eps/steps. Crafted in eval mode by default (no dropout noise).
    """

    def __init__(self, threat, *, steps: int = 3, step_size: float | None = None, lam: float = 1.0,
                 random_start: bool = True, adv_only: bool = False, **kw):
        super().__init__(threat, **kw)
        self.steps = check_number(steps, "steps", owner="embed-pgd", low=1, integer=True)
        self.step_size = optional_step_size(step_size, self.name)
        self.lam = check_number(lam, "lam", owner="embed-pgd", low=0)
        self.random_start = bool(random_start)
        self.adv_only = bool(adv_only)

    def __call__(self, model, x, y, *, eps=None):
        x = _model_inputs(x)
        e = self._threat(eps).eps
        step = 2.5 * e / self.steps if self.step_size is None else self.step_size
        delta = self._craft(model, x, embedding.ce_loss(y), eps, self.steps, step, self.random_start)
        logits_adv = model(x, delta=delta)
        adv = F.cross_entropy(logits_adv, y)
        if self.adv_only:
            return adv, {"adv_acc": _acc(logits_adv, y)}
        logits = model(x)
        return F.cross_entropy(logits, y) + self.lam * adv, {"clean_acc": _acc(logits, y),
                                                             "adv_acc": _acc(logits_adv, y)}
