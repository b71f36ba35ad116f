"""FreeLB (Zhu et al. 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._validation import check_number
from ...modality import embedding
from .base import _acc, crafting_model, optional_step_size, register_objective
from .embed_pgd import _model_inputs, _TextObjective


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
        self.step_size = optional_step_size(step_size, self.name)
        self.init_scale = check_number(init_scale, "init_scale", owner="freelb", low=0)

    def __call__(self, model, x, y, *, eps=None):
        x = _model_inputs(x)
        threat = self._threat(eps)
        bare = crafting_model(model)
        mask = x["attention_mask"]
        emb_dtype = bare.embedding_layer().weight.dtype
        mask3 = mask.unsqueeze(-1).to(emb_dtype)
        scale = embedding.embedding_scale(bare, threat.norm)
        r_eps = embedding.radius(threat, mask, scale, threat.eps)
        step = threat.eps / self.steps * 2.5 if self.step_size is None else self.step_size
        r_step = embedding.radius(threat, mask, scale, step)
        shape = (*x["input_ids"].shape, bare.embedding_layer().weight.shape[1])
        delta = embedding.random_delta(threat, torch.Size(shape), mask3, r_eps * self.init_scale,
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
                delta = embedding.ascend(threat, delta.detach(), g, mask3, r_step, r_eps)
        return torch.stack(losses).mean(), {"adv_acc": accs[-1], "first_step_acc": accs[0]}
