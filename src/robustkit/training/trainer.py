"""The one training loop, for every objective (DESIGN decision 4).

``train(config)`` builds data, model and objective from a :class:`~robustkit.config.TrainConfig`
and runs :class:`Trainer`. A run is a folder ``<out_dir>/<name>/`` holding ``config.yaml``,
``metrics.jsonl``, ``last.safetensors``/``best.safetensors`` (model checkpoints),
``state.safetensors`` (optimizer, RNG, counters for ``resume``) and ``curve.png``. Every file is
written atomically, so a run killed at any moment loses at most the epoch in progress.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..checkpoint import CheckpointError, atomic_write_text, _unwrap
from ..config import TrainConfig
from .callbacks import Callback, CatastrophicOverfittingGuard
from .objectives import Objective
from .schedules import lr_multiplier
from .state import load_state, save_state, unflatten_optimizer

log = logging.getLogger(__name__)
Batches = Callable[[int], Iterable[tuple[Any, torch.Tensor]]]


class CatastrophicOverfitting(RuntimeError):
    pass


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict]
    best: dict | None
    stopped_early: str | None = None
    extra: dict = field(default_factory=dict)


# tensor_batches moved to robustkit.data.batches (the modality adapters batch the data); kept importable here.
from ..data.batches import tensor_batches  # noqa: E402,F401


# -- the loop -----------------------------------------------------------------------------------
def default_callbacks(cfg: TrainConfig, objective: Objective) -> list[Callback]:
    """The catastrophic-overfitting guard for single-step objectives (unless ``co_guard="off"``)."""
    if objective.single_step and cfg.co_guard != "off":
        return [CatastrophicOverfittingGuard(cfg.co_guard, co_drop=cfg.co_drop, co_gap=cfg.co_gap)]
    return []


class Trainer:
    """One loop for every objective. ``batches(epoch)`` yields (x, y); ``validate(model)`` returns a
    dict of validation metrics; ``save_model_fn(path, model, metrics)`` writes a model checkpoint.

    The loop knows no method by name: it calls the objective's ``before_step``/``after_step`` hooks
    around each batch (order in :class:`~robustkit.training.objectives.Objective`) and reads its
    declared attributes. ``callbacks`` default to :func:`default_callbacks`.
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, objective: Objective, batches: Batches,
                 validate: Callable[[nn.Module], dict], save_model_fn: Callable[[Path, nn.Module, dict], None],
                 run_dir: Path, *, device: torch.device, progress: bool = False, is_main: bool = True,
                 ddp_model: nn.Module | None = None, callbacks: list[Callback] | None = None):
        self.cfg, self.model, self.objective = cfg, model, objective
        self.callbacks = default_callbacks(cfg, objective) if callbacks is None else list(callbacks)
        self.train_model = ddp_model or model
        self.batches, self.validate, self.save_model_fn = batches, validate, save_model_fn
        self.run_dir, self.device, self.progress, self.is_main = run_dir, device, progress, is_main
        self.optimizer = self._make_optimizer()
        steps_per_epoch = math.ceil(getattr(batches, "num_batches", 1) / cfg.accumulate)
        self.total_steps = steps_per_epoch * cfg.epochs
        self.lr_fn = lr_multiplier(cfg.schedule, self.total_steps, milestones=cfg.milestones,
                                   lr_min_ratio=cfg.lr_min / cfg.lr,
                                   warmup_steps=int(cfg.warmup_epochs * steps_per_epoch))
        self.steps_per_epoch = steps_per_epoch
        self.step = 0
        self.history: list[dict] = []
        self.best: dict | None = None
        self.start_epoch = 0
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" and device.type == "cuda" else None
        self.tb = self._tensorboard()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0,
                                   weight_decay=c.weight_decay)
        cls = torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW
        return cls(params, lr=c.lr, weight_decay=c.weight_decay)

    def _tensorboard(self):
        if not (self.cfg.tensorboard and self.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # noqa: BLE001 - tensorboard is optional
            log.warning("tensorboard=True but the tensorboard package is not installed; skipping it")
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    # -- epsilon and precision -------------------------------------------------------------------
    def eps_at(self, epoch: int, i: int) -> float | None:
        thr = self.objective.threat
        if thr is None:
            return None
        w = self.cfg.eps_warmup_epochs
        if w <= 0:
            return thr.eps
        n = max(1, getattr(self.batches, "num_batches", 1))
        progress = (epoch + (i + 1) / n) / w
        return thr.eps * min(1.0, progress)

    def _autocast(self):
        p = self.cfg.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # -- resume ------------------------------------------------------------------------------------
    def restore(self) -> None:
        state_path = self.run_dir / "state.safetensors"
        model_state, opt_tensors, meta, rng = load_state(state_path)
        try:
            self.model.load_state_dict(model_state)
            unflatten_optimizer(self.optimizer, opt_tensors, meta["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"Cannot resume {self.run_dir}: the saved training state does not fit the model and optimizer this "
                f"config builds now ({first}). The model or its code changed since the run was saved; resume with "
                "the code that wrote it, or start a new run (--overwrite or another --name).") from None
        info = meta["info"]
        self.start_epoch, self.step = info["epoch"] + 1, info["step"]
        self.best = info.get("best")
        self.objective.load_state(info.get("objective", {}))
        torch.set_rng_state(rng)
        self.history = [row for row in read_metrics(self.run_dir) if row["epoch"] < self.start_epoch]
        log.info("resumed %s at epoch %d", self.run_dir, self.start_epoch)

    # -- main loop ---------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.cfg
        stopped = None
        for epoch in range(self.start_epoch, cfg.epochs):
            train_stats = self._train_epoch(epoch)
            t_val = time.perf_counter()
            val = self.validate(self.model)
            # Validation time is reported apart from epoch_seconds: "training time" budgets include it.
            val["val_seconds"] = time.perf_counter() - t_val
            row = {"epoch": epoch, **train_stats, **val, "lr": self.optimizer.param_groups[0]["lr"],
                   "eps": self.eps_at(epoch, getattr(self.batches, "num_batches", 1) - 1)}
            self.history.append(row)
            # Without a TTY there is no progress bar: one line per epoch keeps long runs observable (-v).
            log.info("epoch %d: %s", epoch, "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                     for k, v in row.items() if k != "epoch"))
            key = self._best_key(val)
            improved = self.best is None or val.get(key, -1) > self.best.get(key, -1)
            # A list, not a generator: every callback sees the row even after one has vetoed it.
            eligible = all([cb.on_validation_end(self, epoch, row) for cb in self.callbacks])
            if improved and eligible:
                self.best = dict(row)
            if self.is_main:
                self._save_epoch(epoch, row, improved and eligible)
            messages = [m for m in (cb.on_epoch_end(self, epoch, row) for cb in self.callbacks) if m]
            if messages:
                stopped = messages[0]
                break
        if self.tb is not None:
            self.tb.close()
        return TrainResult(self.run_dir, self.history, self.best, stopped)

    def _best_key(self, val: dict) -> str:
        by = self.cfg.select_best_by
        if by == "auto":
            by = self.objective.select_best_by
        return "val_robust_acc" if by == "robust" and "val_robust_acc" in val else "val_clean_acc"

    def _train_epoch(self, epoch: int) -> dict:
        cfg, model = self.cfg, self.train_model
        model.train()
        n_batches = getattr(self.batches, "num_batches", None)
        bar = _progress(self.progress and self.is_main, total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}")
        sums: dict[str, float] = {}
        seen, t0 = 0, time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(self.batches(epoch)):
            x, y = _to(x, self.device), y.to(self.device)
            eps = self.eps_at(epoch, i)
            try:
                # The hooks share the loss's autocast context: AWP's extra passes must match its precision.
                with self._autocast():
                    self.objective.before_step(self.model, x, y, eps=eps)
                    loss, stats = self.objective(model, x, y, eps=eps)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {float(loss)} at epoch {epoch + 1}, "
                                             f"batch {i + 1}; lower the learning rate or enable grad_clip")
                scaled = loss * _share_weight(y.shape[0]) / cfg.accumulate
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            finally:
                # Before any optimizer step, and even on failure: weights moved by before_step go back.
                self.objective.after_step(self.model)
            if (i + 1) % cfg.accumulate == 0 or (n_batches is not None and i + 1 == n_batches):
                self._optimizer_step()
            bs = y.shape[0]
            seen += bs
            for k, v in {"loss": float(loss.detach()), **stats}.items():
                sums[k] = sums.get(k, 0.0) + v * bs
            if bar is not None:
                rate = seen / max(1e-9, time.perf_counter() - t0)
                bar.set_postfix({k: f"{v / seen:.3f}" for k, v in sums.items()} | {"img/s": f"{rate:.0f}"})
                bar.update(1)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        seen, sums = _reduce_across_ranks(seen, sums)
        out = {f"train_{k}": v / max(1, seen) for k, v in sums.items()}
        out.update({"epoch_seconds": seconds, "images_per_second": seen / max(1e-9, seconds)})
        return out

    def _optimizer_step(self) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.cfg.lr * self.lr_fn(self.step)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    # -- files ---------------------------------------------------------------------------------------
    def _save_epoch(self, epoch: int, row: dict, improved: bool) -> None:
        # Order matters for crash safety: checkpoints first, then the state that says the epoch is done.
        self.save_model_fn(self.run_dir / "last.safetensors", self.model, row)
        if improved:
            self.save_model_fn(self.run_dir / "best.safetensors", self.model, row)
        write_metrics(self.run_dir, self.history)
        info = {"epoch": epoch, "step": self.step, "best": self.best, "objective": self.objective.state()}
        save_state(self.run_dir / "state.safetensors", model_state=_unwrap(self.model).state_dict(),
                   optimizer=self.optimizer, info=info, rng_state=torch.get_rng_state())
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.tb.add_scalar(k, v, epoch)
        try:
            from .curve import plot_curve
            plot_curve(self.history, self.run_dir / "curve.png")
        except Exception as err:  # noqa: BLE001 - a failed plot must not kill a training run
            log.warning("could not draw the training curve: %s", err)


def _share_weight(local_n: int) -> float:
    """DDP averages the ranks' gradients; when their shares of a global batch differ in size (the last
    batch of an epoch), weighting each rank's mean loss by world * local_n / global_n makes that average
    the gradient of the global batch's mean loss, exactly as one process would compute it."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return 1.0
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    n = torch.tensor([float(local_n)], dtype=torch.float64, device=device)
    dist.all_reduce(n)
    return dist.get_world_size() * local_n / float(n)


def _reduce_across_ranks(seen: int, sums: dict[str, float]) -> tuple[int, dict[str, float]]:
    """Sum the epoch's sample counts and metric sums over DDP ranks (one all-reduce), so the logged
    training loss and accuracy are the global epoch's, not rank 0's share."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return seen, sums
    keys = sorted(sums)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(seen)] + [sums[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return int(t[0]), {k: float(v) for k, v in zip(keys, t[1:].tolist())}


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def read_metrics(run_dir: Path) -> list[dict]:
    p = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else []


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def _progress(enabled: bool, total: int | None, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def progress_default() -> bool:
    """Progress bars only for people: a TTY and not CI."""
    import sys
    return sys.stderr.isatty() and not os.environ.get("CI")
