"""Adversarial fine-tuning of a hardened model with any registered training objective.

The loop is the trainer's step, read top to bottom: the objective's ``before_step`` / loss /
``after_step`` hooks, Adam with a cosine-decayed learning rate. Pruning masks stay in place while it
runs (``torch.nn.utils.prune`` reparametrization), so pruned weights stay zero; a fake-quantized
model (quantization-aware training) trains the same way.
"""
from __future__ import annotations

import logging
import math
import time

import torch
from torch import nn

from .._validation import check_number

log = logging.getLogger(__name__)


def finetune(model: nn.Module, modality, x_train, y_train, threat, *, method: str, epochs: int, cfg,
             lr: float = 1e-3, seed: int = 0, method_args: dict | None = None, progress: bool = False,
             keep_zero: list | None = None) -> dict:
    """Fine-tune ``model`` in place for ``epochs`` epochs with objective ``method``; returns per-epoch stats.

    ``cfg`` is the parent run's TrainConfig (batch size, seed; text: tokenization); ``threat`` its
    training threat model (None for clean training). ``keep_zero`` [(weight, mask), ...] puts pruned
    weights back to zero after every step (for models whose masks were already folded in, e.g. QAT).
    """
    from ..training.objectives import create_objective, get_objective_class
    epochs = check_number(epochs, "epochs", owner="harden", low=1, integer=True)
    lr = check_number(lr, "lr", owner="harden", low=0, low_inclusive=False)
    cls = get_objective_class(method)
    if modality.name not in cls.modalities:
        raise ValueError(f"The 'finetune' parameter of harden must be a training method for {modality.name} models; "
                         f"{method!r} trains {', '.join(cls.modalities)} models.")
    objective = create_objective(method, threat, seed=seed, **(method_args or {}))
    batches = modality.training_batches(x_train, y_train, model, cfg, rank=0, world=1,
                                        with_raw=cls.needs_raw_inputs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    n_batches = max(1, getattr(batches, "num_batches", 1))
    total = epochs * n_batches
    history, step = [], 0
    model.train()
    for epoch in range(epochs):
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for x, y in batches(epoch):
            for g in opt.param_groups:  # cosine decay to zero over the fine-tuning
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            objective.before_step(model, x, y)
            try:
                loss, _ = objective(model, x, y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"fine-tuning loss became {float(loss)}; lower --lr")
                loss.backward()
            finally:
                objective.after_step(model)
            opt.step()
            with torch.no_grad():
                for w, mask in keep_zero or ():
                    w.mul_(mask)
            opt.zero_grad(set_to_none=True)
            step += 1
            seen += y.shape[0]
            loss_sum += float(loss.detach()) * y.shape[0]
        history.append({"epoch": epoch, "train_loss": loss_sum / max(1, seen), "seconds": time.perf_counter() - t0})
        log.info("fine-tune epoch %d: loss %.4f (%.1fs)", epoch + 1, history[-1]["train_loss"], history[-1]["seconds"])
    model.eval()
    return {"method": method, "epochs": epochs, "lr": lr, "objective": objective.params(), "history": history}
