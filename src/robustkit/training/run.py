"""``train(config)``: build data, model, objective and validator from a TrainConfig and run the Trainer.

One path for images and texts: the dataset's modality adapter loads the data, builds the model,
says what the training threat model is and batches the inputs. Works unchanged under ``torchrun --nproc_per_node N`` (DistributedDataParallel; gloo on CPU,
nccl on GPU): each rank trains on a disjoint stride of every epoch's permutation and rank 0 writes
the run folder.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import (CheckpointError, atomic_write_text, clean_stale_tmp, ensure_writable, load_model,
                          save_model)
from ..config import TrainConfig
from ..device import amp_precision, resolve_device  # noqa: F401 - re-exported
from ..distributed import gather_objects, init_from_env
from ..modality import for_checkpoint, for_dataset
from .callbacks import EpochHook
from .objectives import create_objective, get_objective_class
from .runlock import RunLock
from .tracking import make_trackers
from .trainer import Trainer, TrainResult, progress_default
from .validation import validator

log = logging.getLogger(__name__)


def _distributed(device: torch.device, timeout_s: float = 300.0) -> tuple[int, int]:
    return init_from_env(device, timeout_s)


def weights_sha256(model: nn.Module) -> str:
    """Hash of every parameter and buffer, in order: equal on every rank after a correct DDP run."""
    import hashlib
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_ranks_agree(model: nn.Module, world: int) -> dict:
    """Gather every rank's weight hash; ranks that diverged are an error, not a silent mix of models."""
    mine = weights_sha256(model)
    hashes = gather_objects(mine)
    if len(set(hashes)) != 1:
        raise RuntimeError(f"DDP ranks ended with different weights (sha256 per rank: {hashes}); the checkpoint "
                           "holds rank 0's. This is a bug: please report it with the config.")
    return {"world_size": world, "weights_sha256": mine, "ranks_agree": True}


def elastic_restart() -> bool:
    """True in a worker that torchrun restarted after a failure (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def run_dir_for(cfg: TrainConfig) -> Path:
    name = cfg.name or f"{cfg.data}-{cfg.model}-{cfg.method}"
    return Path(cfg.out_dir) / name


def check_model_fits_data(model_spec: dict, data_spec: dict, source: str) -> None:
    """A model whose input channels or classes differ from the data's is an error before training."""
    for_checkpoint({"data": data_spec, "model": model_spec}).check_model_fits(model_spec, data_spec, source)


# Keys a resumed run may change: they do not alter what the finished epochs computed. A longer
# `epochs` stretches the learning-rate schedule over the new length (said in the log).
SAFE_ON_RESUME = ("epochs", "device", "data_dir", "eval_batch_size", "ddp_timeout", "tensorboard", "log")
# Keys that locate the run folder itself: equal by construction when the folder was found.
_LOCATION_KEYS = ("name", "out_dir")


def _resume_config(saved: TrainConfig, given: TrainConfig, given_keys) -> tuple[TrainConfig, list[str]]:
    """The saved config, with the safe changes the caller asked for applied; conflicting ones refused."""
    keys = given.field_names() if given_keys is None else list(given_keys)
    conflicts, applied = [], []
    for key in keys:
        if key in _LOCATION_KEYS or key not in saved.field_names():
            continue
        want, have = getattr(given, key), getattr(saved, key)
        if want == have:
            continue
        if key in SAFE_ON_RESUME:
            applied.append(f"{key}: {have!r} -> {want!r}")
            setattr(saved, key, want)
        else:
            conflicts.append(f"{key}={want!r} (saved: {have!r})")
    if conflicts:
        raise ValueError(f"Cannot resume with settings that differ from the run's saved config: "
                         f"{', '.join(conflicts)}. A resumed run keeps its config (only "
                         f"{', '.join(SAFE_ON_RESUME)} may change); drop those settings, or start a new run "
                         "with another name.")
    saved.validate()
    return saved, applied


def open_run(cfg: TrainConfig, *, resume: bool, overwrite: bool, given_keys=None,
             notes: list[str] | None = None) -> tuple[TrainConfig, Path]:
    """Validate ``cfg`` and find its run folder; on resume the folder's saved config wins.

    Refuses to start over a folder that holds a run unless asked to: losing hours of training to a
    reused name is the worst outcome of a typo. On resume, settings that differ from the saved config
    are refused by name unless they are safe to change (``SAFE_ON_RESUME``); ``given_keys`` names the
    settings the caller set explicitly (None: every field of ``cfg``). What a resume changed or lost is
    appended to ``notes`` (and logged as a warning).
    """
    cfg.validate()
    run_dir = run_dir_for(cfg)
    log_notes = notes is None  # a caller that collects the notes shows them itself
    notes = [] if notes is None else notes
    if resume:
        if not (run_dir / "state.safetensors").is_file():
            raise FileNotFoundError(f"Cannot resume: {run_dir} holds no state.safetensors (no finished epoch).")
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"Cannot resume: {run_dir} holds no config.yaml (the run's saved config).")
        saved = TrainConfig.from_yaml(run_dir / "config.yaml")
        cfg, applied = _resume_config(saved, cfg, given_keys)
        notes += [f"changed on resume: {a}" for a in applied]
        if not (run_dir / "metrics.jsonl").is_file():
            notes.append(f"{run_dir / 'metrics.jsonl'} is missing: the finished epochs' metrics are lost, the "
                         "history restarts at the resumed epoch")
        if applied and int(os.environ.get("RANK", "0")) == 0:  # the folder's config says what the run now is
            atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
        for n in notes if log_notes else ():
            log.warning("%s", n)
        return cfg, run_dir
    hint = ("Continue it (--resume; resume=True in Python), start again (--overwrite; overwrite=True), or use "
            "another name (--name; TrainConfig(name=...)).")
    if (run_dir / "state.safetensors").is_file() and not overwrite:
        raise FileExistsError(f"Run folder {run_dir} already holds a run. {hint}")
    if not overwrite and run_dir.is_dir():
        from ..checkpoint import TMP_SUFFIX
        from .runlock import LOCK_NAME
        held = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME and not p.name.endswith(TMP_SUFFIX))
        if held:
            raise FileExistsError(
                f"Run folder {run_dir} already holds files ({', '.join(held[:4])}{', ...' if len(held) > 4 else ''}) "
                "but no finished epoch (no state.safetensors): a run stopped before its first epoch ended, or the "
                "folder is not a run. Start again there (--overwrite; overwrite=True in Python) or use another "
                "name (--name).")
    if cfg.name is None:  # record the name the folder got, not null
        cfg = dataclasses.replace(cfg, name=run_dir.name)
    return cfg, run_dir


def load_init(model: nn.Module, cfg: TrainConfig, data_spec: dict | None = None) -> None:
    """Start from the weights of ``cfg.init_from`` (fine-tuning), checking they fit the model and data."""
    init, meta = load_model(cfg.init_from)
    if data_spec is not None:
        check_model_fits_data(meta["model"], data_spec, f"init_from checkpoint {cfg.init_from!r}")
    try:
        model.load_state_dict(init.state_dict())
    except RuntimeError as err:
        raise CheckpointError(f"init_from checkpoint {cfg.init_from!r} does not fit model {cfg.model!r}: "
                              f"{err}") from None


def place_model(model: nn.Module, cfg: TrainConfig, device: torch.device,
                world: int) -> tuple[nn.Module, nn.Module | None]:
    """Move the model to its device; wrap it in DDP (several processes) and/or torch.compile.

    Returns the bare model (saved, validated) and the wrapper that trains, or None when there is none.
    """
    model = model.to(device)
    wrapped = None
    if world > 1:
        if cfg.sync_batchnorm:  # batch statistics over the global batch, not each rank's share
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                      else None)
    if cfg.compile:
        wrapped = torch.compile(wrapped or model)
    return model, wrapped


def start_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool) -> None:
    """Create the run folder; a fresh run clears a previous run's files and writes its resolved config.

    Call it holding the folder's :class:`RunLock`: it removes the temporary files a killed writer left.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in clean_stale_tmp(run_dir):
        log.info("removed %s, left by a killed writer", stale)
    if not resume:
        for stale in ("metrics.jsonl", "best.safetensors", "last.safetensors", "state.safetensors"):
            (run_dir / stale).unlink(missing_ok=True)
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool | None = None,
          overwrite: bool = False, given_keys=None, notes: list[str] | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train (or resume) a model as the config says; returns the history and the best epoch.

    Under ``torchrun`` it trains with DistributedDataParallel: ``batch_size`` is the global batch,
    each rank crafts adversarial examples for its share on the bare module, rank 0 writes the run
    folder, and a worker restarted by ``--max-restarts`` resumes from the last finished epoch.

    The run folder is locked for the run (:class:`~robustkit.training.runlock.RunLock`): a second
    writer, or ``overwrite`` of a live run, is refused. ``on_epoch(row)`` is called after each epoch.
    """
    if elastic_restart() and (run_dir_for(cfg) / "state.safetensors").is_file():
        resume, overwrite = True, False  # never wipe the run a failed worker left behind
    resolve_device(cfg.device)  # a device this machine lacks: an error before any folder is touched
    cfg, run_dir = open_run(cfg, resume=resume, overwrite=overwrite, given_keys=given_keys, notes=notes)
    # Rank 0 alone writes the folder, so it alone holds the lock (torchrun sets RANK before we start).
    lock = RunLock(run_dir) if int(os.environ.get("RANK", "0")) == 0 else None
    if lock is not None:
        lock.acquire()
    try:
        return _train_locked(cfg, run_dir, resume=resume, progress=progress, on_epoch=on_epoch)
    finally:
        if lock is not None:
            lock.release()


def _train_locked(cfg: TrainConfig, run_dir: Path, *, resume: bool, progress: bool | None,
                  on_epoch: Callable[[dict], None] | None) -> TrainResult:
    modality = for_dataset(cfg.data)
    objective_cls = get_objective_class(cfg.method)
    if modality.name not in objective_cls.modalities:
        raise ValueError(f"The 'method' parameter of TrainConfig must be a training method for {modality.name} "
                         f"data ({cfg.data!r}); {cfg.method!r} trains {', '.join(objective_cls.modalities)} models. "
                         f"Methods for {modality.name}: {', '.join(_methods_for(modality.name))}.")
    model_kw, data_kw = modality.data_options(cfg.model_args)
    device = resolve_device(cfg.device)
    rank, world = _distributed(device, cfg.ddp_timeout)
    # Everything that needs the data and the model is checked before the first step.
    ds = modality.load(cfg.data, data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed, **data_kw)
    x_train, y_train, x_val, y_val = modality.training_split(ds, cfg)
    threat = modality.training_threat(cfg.norm, cfg.eps, ds)
    objective = create_objective(cfg.method, threat, seed=cfg.seed, **cfg.method_args)
    with torch.random.fork_rng(devices=[]):
        # The run's seed governs weight init and dropout without touching the caller's global RNG.
        torch.manual_seed(cfg.seed)
        model = modality.build_model(cfg, ds, model_kw)
        if cfg.init_from:
            load_init(model, cfg, data_spec=ds.spec())
        model, ddp = place_model(model, cfg, device, world)
        if rank == 0:
            # last + best checkpoints and the state file (weights and two optimizer moments): about five
            # copies of the weights; found short before the first epoch, not after it.
            weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
            ensure_writable(run_dir, need_bytes=5 * weight_bytes + (1 << 20))
            start_run_dir(run_dir, cfg, resume)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        params_doc = {"trainable_parameters": trainable, "total_parameters": sum(p.numel() for p in model.parameters())}
        log.info("config: %s", cfg.to_dict())
        log.info("model %s: %d of %d parameters trainable", cfg.model, trainable, params_doc["total_parameters"])
        n_eval = min(cfg.eval_size, modality.size(x_val))
        validate = validator(modality, modality.to_device(modality.take(x_val, torch.arange(n_eval)), device),
                             y_val[:n_eval].to(device), threat, steps=cfg.eval_steps, batch_size=cfg.eval_batch_size,
                             with_fgsm=objective_cls.single_step and cfg.co_guard != "off", seed=cfg.seed)
        batches = modality.training_batches(x_train, y_train, model, cfg, rank=rank, world=world,
                                            with_raw=objective_cls.needs_raw_inputs)
        method_doc = {"name": cfg.method, "args": cfg.method_args, "objective": objective.params()}

        def save_fn(path: Path, m: nn.Module, metrics: dict) -> None:
            save_model(path, m, data=ds.spec(), threat=threat.to_dict() if threat else None, method=method_doc,
                       extra={"metrics": metrics, "config": cfg.to_dict(), **params_doc,
                              "saved": datetime.datetime.now(datetime.timezone.utc).isoformat()})

        trainer = Trainer(cfg, model, objective, batches, validate, save_fn, run_dir, device=device,
                          progress=progress_default() if progress is None else progress, is_main=rank == 0,
                          ddp_model=ddp)
        if on_epoch is not None:
            trainer.callbacks.append(EpochHook(on_epoch))
        trackers = make_trackers(cfg, run_dir) if rank == 0 else []
        trainer.callbacks += trackers
        if resume:
            trainer.restore()
        try:
            result = trainer.fit()
        except BaseException:
            for t in trackers:
                t.finish("FAILED")
            raise
        for t in trackers:
            t.finish()
        result.extra.update(params_doc)
        if world > 1:
            result.extra["ddp"] = check_ranks_agree(model, world)
    if world > 1:
        dist.barrier()
    return result


def _methods_for(modality: str) -> list[str]:
    from .objectives import available_objectives
    return [m for m in available_objectives() if modality in get_objective_class(m).modalities]
