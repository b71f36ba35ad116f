"""``train_text(config)``: the text counterpart of :func:`robustkit.training.run.train`.

Same TrainConfig, same Trainer, same run folder. Text-specific options travel in ``model_args``
until TrainConfig grows fields for them: ``max_length`` (64), ``freeze_layers`` (0), ``head``
("mean"), ``dropout``, ``lora`` (e.g. ``{"r": 8, "alpha": 16}``), and the data options
``text_column``, ``label_column``, ``variant``, ``on_empty``. Validation is clean accuracy on the
evaluation split (SST-2: dev), first ``eval_size`` texts.
"""
from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import save_model
from ..config import TrainConfig
from ..threat import ThreatModel
from ..training.objectives import create_objective
from ..training.run import _distributed, load_init, open_run, place_model, resolve_device, start_run_dir
from ..training.trainer import Trainer, TrainResult, progress_default
from . import objectives as _objectives  # noqa: F401 - registers embed-pgd, freelb, smart, augment
from .data import TextDataset, load_text_dataset, text_batches
from .models import TextClassifier, build_text_model

log = logging.getLogger(__name__)

MODEL_KEYS = ("max_length", "freeze_layers", "head", "dropout", "lora")
DATA_KEYS = ("text_column", "label_column", "variant", "on_empty", "labels", "train_file", "test_file")


def split_model_args(model_args: dict) -> tuple[dict, dict]:
    unknown = set(model_args) - set(MODEL_KEYS) - set(DATA_KEYS)
    if unknown:
        raise ValueError(f"Unknown model_args key(s) {sorted(unknown)} for a text run. Accepted: "
                         f"{', '.join(MODEL_KEYS + DATA_KEYS)}.")
    model_kw = {k: v for k, v in model_args.items() if k in MODEL_KEYS}
    model_kw.setdefault("max_length", 64)
    return model_kw, {k: v for k, v in model_args.items() if k in DATA_KEYS}


@torch.no_grad()
def text_accuracy(model: TextClassifier, texts: list[str], labels: torch.Tensor, *, batch_size: int = 64) -> float:
    if not texts:
        return float("nan")
    probs = model.predict_proba(texts, batch_size=batch_size)
    return float((probs.argmax(-1) == labels.cpu()).float().mean())


def text_validator(texts: list[str], labels: torch.Tensor, batch_size: int):
    def validate(model: nn.Module) -> dict:
        return {"val_clean_acc": text_accuracy(model, texts, labels, batch_size=batch_size)}
    return validate


def train_text(cfg: TrainConfig, *, resume: bool = False, progress: bool | None = None,
               overwrite: bool = False) -> TrainResult:
    """Fine-tune a text classifier as the config says (``cfg.data`` a text dataset, ``cfg.model`` a text model)."""
    cfg, run_dir = open_run(cfg, resume=resume, overwrite=overwrite)
    model_kw, data_kw = split_model_args(cfg.model_args)
    device = resolve_device(cfg.device)
    rank, world = _distributed(device)
    ds: TextDataset = load_text_dataset(cfg.data, data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed, **data_kw)
    threat = ThreatModel(cfg.norm, cfg.eps, None) if cfg.eps > 0 else None
    objective = create_objective(cfg.method, threat if cfg.method != "standard" else None, seed=cfg.seed,
                                 **cfg.method_args)
    with torch.random.fork_rng(devices=[]):
        # The run's seed governs head init and dropout without touching the caller's global RNG.
        torch.manual_seed(cfg.seed)
        model = build_text_model(cfg.model, ds.num_classes, **model_kw)
        if cfg.init_from:
            load_init(model, cfg)
        model, ddp = place_model(model, cfg, device, world)
        if rank == 0:
            start_run_dir(run_dir, cfg, resume)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info("config: %s", cfg.to_dict())
        log.info("text model %s: %d of %d parameters trainable", cfg.model, trainable, total)
        n_eval = min(cfg.eval_size, len(ds.test_texts))
        validate = text_validator(ds.test_texts[:n_eval], ds.test_labels[:n_eval], cfg.eval_batch_size)
        texts = ds.train_texts[rank::world]
        labels = ds.train_labels[rank::world]
        batches = text_batches(texts, labels, model.tokenizer, batch_size=cfg.batch_size,
                               max_length=model.max_length, seed=cfg.seed, with_texts=cfg.method == "augment")
        method_doc = {"name": cfg.method, "args": cfg.method_args, "objective": objective.params()}
        params_doc = {"trainable_parameters": trainable, "total_parameters": total}

        def save_fn(path: Path, m: nn.Module, metrics: dict) -> None:
            save_model(path, m, data=ds.spec(), threat=threat.to_dict() if threat else None, method=method_doc,
                       extra={"metrics": metrics, "config": cfg.to_dict(), **params_doc,
                              "saved": datetime.datetime.now(datetime.timezone.utc).isoformat()})

        trainer = Trainer(cfg, model, objective, batches, validate, save_fn, run_dir, device=device,
                          progress=progress_default() if progress is None else progress, is_main=rank == 0,
                          ddp_model=ddp)
        if resume:
            trainer.restore()
        t0 = time.perf_counter()
        result = trainer.fit()
        result.extra.update(params_doc, seconds=time.perf_counter() - t0)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    return result
