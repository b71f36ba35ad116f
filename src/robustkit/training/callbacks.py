"""Callbacks: behaviour around the training loop that is not the loop (DESIGN: training/callbacks.py).

A callback sees each epoch twice: :meth:`Callback.on_validation_end` after validation, before the
best checkpoint is chosen and files are written (it may annotate the metrics row and keep the
epoch from becoming the best), and :meth:`Callback.on_epoch_end` after the files are written (a
returned message stops training).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..checkpoint import _unwrap, load_model

if TYPE_CHECKING:
    from .trainer import Trainer

log = logging.getLogger(__name__)


class Callback:
    def on_validation_end(self, trainer: "Trainer", epoch: int, row: dict) -> bool:
        """May add keys to ``row`` (the epoch's metrics). Return False when this epoch must not become
        the best checkpoint."""
        return True

    def on_epoch_end(self, trainer: "Trainer", epoch: int, row: dict) -> str | None:
        """Called after the epoch's checkpoints and metrics are written; a returned string stops
        training with that message."""
        return None


class CatastrophicOverfittingGuard(Callback):
    """Catastrophic overfitting (Wong et al. 2020): PGD validation accuracy lost at least ``co_drop``
    of its best value (relative) while FGSM accuracy stays ``co_gap`` above it — the single-step
    attack no longer finds the adversarial examples the multi-step one does.

    Needs ``val_fgsm_acc`` and ``val_robust_acc`` in the validation metrics. A collapsed epoch is
    marked ``catastrophic_overfitting: true`` and never becomes the best. Then ``action``:
    ``"rollback"`` restores the best checkpoint, re-saves it as ``last`` and stops;
    ``"lower-step"`` restores the best checkpoint, halves the objective's ``step_size`` and goes on;
    ``"warn"`` only logs; ``"off"`` does nothing.
    """

    def __init__(self, action: str = "rollback", *, co_drop: float = 0.5, co_gap: float = 0.3):
        self.action, self.co_drop, self.co_gap = action, co_drop, co_gap
        self._collapsed = False

    def on_validation_end(self, trainer, epoch, row):
        self._collapsed = self._catastrophic(trainer, row)
        if self._collapsed:
            row["catastrophic_overfitting"] = True
        return not self._collapsed

    def _catastrophic(self, trainer, val: dict) -> bool:
        if self.action == "off" or "val_fgsm_acc" not in val or "val_robust_acc" not in val:
            return False
        best_rob = (trainer.best or {}).get("val_robust_acc", 0.0)
        collapsed = val["val_robust_acc"] < (1.0 - self.co_drop) * best_rob
        masked = val["val_fgsm_acc"] - val["val_robust_acc"] > self.co_gap
        return bool(collapsed and masked)

    def on_epoch_end(self, trainer, epoch, row):
        if not self._collapsed:
            return None
        self._collapsed = False
        best = trainer.best
        msg = (f"Catastrophic overfitting at epoch {epoch + 1}: PGD validation accuracy fell to "
               f"{row['val_robust_acc']:.3f} (best {best['val_robust_acc']:.3f} at epoch "
               f"{best['epoch'] + 1}) while FGSM accuracy is {row['val_fgsm_acc']:.3f}.")
        if self.action == "warn":
            log.warning("%s Continuing (co_guard=warn).", msg)
            return None
        best_path = trainer.run_dir / "best.safetensors"
        # Only a model that carries its spec can be rebuilt from a checkpoint.
        if best_path.is_file() and hasattr(_unwrap(trainer.model), "robustkit_spec"):
            restored, _ = load_model(best_path)
            trainer.model.load_state_dict(restored.state_dict())
        if self.action == "rollback":
            log.warning("%s Rolled back to the best checkpoint and stopped (co_guard=rollback).", msg)
            if trainer.is_main:
                trainer.save_model_fn(trainer.run_dir / "last.safetensors", trainer.model, trainer.best or {})
            return msg
        objective = trainer.objective
        if hasattr(objective, "step_size"):
            current = objective.step_size or objective.threat.eps
            objective.step_size = current * 0.5
        log.warning("%s Rolled back to the best checkpoint and halved the attack step size (co_guard=lower-step).",
                    msg)
        return None


class EpochHook(Callback):
    """Calls ``fn(row)`` once each epoch's files are written: the CLI prints one line per epoch from it,
    so a run whose output goes to a log file (no TTY, no progress bar) is observable while it runs."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, trainer, epoch, row):
        if trainer.is_main:
            self.fn(dict(row))
        return None
