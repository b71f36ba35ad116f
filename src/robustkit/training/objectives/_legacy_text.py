"""Adversarial fine-tuning objectives for text classifiers, plugged into the one Trainer.

Registered in :mod:`robustkit.training.objectives`' registry: ``embed-pgd``, ``freelb``, ``smart``,
``augment``. Each maps ``(model, inputs, y) -> (loss, stats)`` where ``inputs`` is a dict of token
tensors; the trainer calls ``loss.backward()`` and steps the optimizer as for any other objective.
Embedding-space radii are relative to the embedding scale (see :mod:`robustkit.text.perturb`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validation import check_number
from ..training.objectives import Objective, crafting_model, register_objective
from . import perturb


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean())


def _model_inputs(x: dict) -> dict:
    return {k: v for k, v in x.items() if isinstance(v, torch.Tensor)}


class _TextObjective(Objective):
    def _generator(self, device: torch.device) -> torch.Generator:
        # A fresh seed per batch: the run reproduces, and batches do not share random starts.
        self._calls += 1
        return torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + self._calls)

    def _craft(self, model, x, loss_fn, eps, steps, step_size, random_start, init_scale=1.0):
        bare = crafting_model(model)
        was = bare.training
        if self.attack_mode == "eval":
            bare.eval()
        try:
            return perturb.embedding_pgd(bare, x, self._threat(eps), loss_fn, steps=steps, step_size=step_size,
                                         random_start=random_start, generator=self._generator(x["input_ids"].device),
                                         init_scale=init_scale)
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
        self.step_size = step_size
        self.lam = check_number(lam, "lam", owner="embed-pgd", low=0)
        self.random_start = bool(random_start)
        self.adv_only = bool(adv_only)

    def __call__(self, model, x, y, *, eps=None):
        x = _model_inputs(x)
        e = self._threat(eps).eps
        step = 2.5 * e / self.steps if self.step_size is None else self.step_size
        delta = self._craft(model, x, perturb.ce_loss(y), eps, self.steps, step, self.random_start)
        logits_adv = model(x, delta=delta)
        adv = F.cross_entropy(logits_adv, y)
        if self.adv_only:
            return adv, {"adv_acc": _acc(logits_adv, y)}
        logits = model(x)
        return F.cross_entropy(logits, y) + self.lam * adv, {"clean_acc": _acc(logits, y),
                                                             "adv_acc": _acc(logits_adv, y)}


@register_objective("freelb")
class FreeLB(_TextObjective):
    """FreeLB (Zhu et al. 2020, "FreeLB: Enhanced Adversarial Training for Natural Language Understanding").

    ``steps`` (K) ascent steps on the embedding perturbation from a random start of size
    ``init_scale · eps``; the parameter gradient is the average of the K gradients at
    delta_0..delta_{K-1}. Here each step's loss is kept in the graph (delta detached between steps)
    and the objective returns their mean, so the trainer's single ``backward()`` produces exactly
    that accumulated gradient while the optimizer, clipping and accumulation stay the trainer's.
    The delta gradient of each step is taken with ``autograd.grad(..., retain_graph=True)``; this costs
    about K-1 extra partial backward passes over the original (which reads both gradients from one
    backward) and keeps K graphs in memory. Dropout differs between steps (the reference reuses masks).
    """

    def __init__(self, threat, *, steps: int = 2, step_size: float | None = None, init_scale: float = 1.0,
                 **kw):
        kw.setdefault("attack_mode", "train")  # FreeLB's ascent uses the same training-mode passes
        super().__init__(threat, **kw)
        self.steps = check_number(steps, "steps", owner="freelb", low=1, integer=True)
        self.step_size = step_size
        self.init_scale = check_number(init_scale, "init_scale", owner="freelb", low=0)

    def __call__(self, model, x, y, *, eps=None):
        x = _model_inputs(x)
        threat = self._threat(eps)
        bare = crafting_model(model)
        mask = x["attention_mask"]
        emb_dtype = bare.embedding_layer().weight.dtype
        mask3 = mask.unsqueeze(-1).to(emb_dtype)
        scale = perturb.embedding_scale(bare, threat.norm)
        r_eps = perturb.radius(threat, mask, scale, threat.eps)
        step = threat.eps / self.steps * 2.5 if self.step_size is None else self.step_size
        r_step = perturb.radius(threat, mask, scale, step)
        shape = (*x["input_ids"].shape, bare.embedding_layer().weight.shape[1])
        delta = perturb.random_delta(threat, torch.Size(shape), mask3, r_eps * self.init_scale,
                                     self._generator(mask.device), emb_dtype, mask.device)
        losses, accs = [], []
        for k in range(self.steps):
            delta.requires_grad_(True)
            logits = model(x, delta=delta)
            loss_k = F.cross_entropy(logits, y)
            losses.append(loss_k)
            accs.append(_acc(logits, y))
            if k + 1 < self.steps:  # the last step's delta update is never used
                (g,) = torch.autograd.grad(loss_k, delta, retain_graph=True)
                delta = perturb.ascend(threat, delta.detach(), g, mask3, r_step, r_eps)
        return torch.stack(losses).mean(), {"adv_acc": accs[-1], "first_step_acc": accs[0]}


def _sym_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    la, lb = F.log_softmax(logits_a.float(), -1), F.log_softmax(logits_b.float(), -1)
    return (F.kl_div(lb, la, log_target=True, reduction="batchmean")
            + F.kl_div(la, lb, log_target=True, reduction="batchmean"))


@register_objective("smart")
class SMART(_TextObjective):
    """SMART's smoothness-inducing regularizer (Jiang et al. 2020): ``CE(f(x), y) + lam_s · symKL(f(x), f(x+δ))``
    with δ from ``steps`` projected ascent steps on KL(f(x) || f(x+δ)) from a small random start
    (``init_scale`` of the radius). The Bregman proximal-point (momentum teacher) part of the paper is
    not included.
    """

    def __init__(self, threat, *, lam: float = 1.0, steps: int = 1, step_size: float | None = None,
                 init_scale: float = 0.1, **kw):
        super().__init__(threat, **kw)
        self.lam = check_number(lam, "lam", owner="smart", low=0)
        self.steps = check_number(steps, "steps", owner="smart", low=1, integer=True)
        self.step_size = step_size
        self.init_scale = check_number(init_scale, "init_scale", owner="smart", low=0)

    def __call__(self, model, x, y, *, eps=None):
        x = _model_inputs(x)
        logits = model(x)
        e = self._threat(eps).eps
        step = e if self.step_size is None else self.step_size
        p_clean = F.softmax(logits.detach().float(), -1)
        delta = self._craft(model, x, perturb.kl_loss(p_clean), eps, self.steps, step, True, self.init_scale)
        logits_adv = model(x, delta=delta)
        reg = _sym_kl(logits, logits_adv)
        return F.cross_entropy(logits, y) + self.lam * reg, {"clean_acc": _acc(logits, y),
                                                             "adv_acc": _acc(logits_adv, y),
                                                             "sym_kl": float(reg.detach())}


@register_objective("augment")
class Augment(Objective):
    """Adversarial data augmentation with word substitutions (A2T, Yoo & Qi 2021): each batch, a
    seeded ``share`` of the examples is attacked with a cheap word-substitution attack (gradient
    word importance, few candidates, no sentence-encoder check by default) and the loss is
    ``CE(clean batch) + lam · CE(adversarial examples)``. Batches must carry their raw texts under
    ``"texts"`` (``text_batches(..., with_texts=True)``, which ``train_text`` does).

    ``attack_args`` go to :class:`~robustkit.text.word_attack.WordSubstitutionAttack`.
    """

    needs_threat = False

    def __init__(self, threat=None, *, share: float = 0.5, lam: float = 1.0, attack_args: dict | None = None,
                 **kw):
        super().__init__(threat, **kw)
        self.share = check_number(share, "share", owner="augment", low=0, high=1)
        self.lam = check_number(lam, "lam", owner="augment", low=0)
        self.attack_args = {"importance": "gradient", "max_candidates": 8, "min_similarity": None,
                            **dict(attack_args or {})}
        self._attack = None

    def _word_attack(self):
        if self._attack is None:
            from .word_attack import WordSubstitutionAttack
            self._attack = WordSubstitutionAttack(**self.attack_args)
        return self._attack

    def __call__(self, model, x, y, *, eps=None):
        if "texts" not in x:
            raise ValueError("The 'augment' method needs the raw texts in each batch (inputs['texts']); build "
                             "batches with robustkit.text.data.text_batches(..., with_texts=True).")
        texts = list(x["texts"])
        inputs = _model_inputs(x)
        self._calls += 1
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self._calls)
        n_adv = int(round(self.share * len(texts)))
        pick = torch.randperm(len(texts), generator=g)[:n_adv].tolist()
        bare = crafting_model(model)
        logits = model(inputs)
        loss = F.cross_entropy(logits, y)
        stats = {"clean_acc": _acc(logits, y)}
        if pick:
            yp = y[pick]
            results = self._word_attack().attack(bare, [texts[i] for i in pick], yp.cpu().tolist(),
                                                 seed=self.seed * 1_000_003 + self._calls)
            adv_inputs = bare.encode([r.adversarial for r in results], device=y.device)
            logits_adv = model(adv_inputs)
            loss = loss + self.lam * F.cross_entropy(logits_adv, yp)
            stats.update({"adv_acc": _acc(logits_adv, yp),
                          "attack_success": sum(r.success for r in results) / len(results)})
        return loss, stats
