"""``train(config)``: build data, model, objective and validator from a TrainConfig and run the Trainer.

One path for images and texts: the dataset's modality adapter loads the data, builds the model,
says what the training threat model is and batches the inputs. Works unchanged under ``torchrun --nproc_per_node N`` (DistributedDataParallel; gloo on CPU,
nccl on GPU): each rank trains on a disjoint stride of every epoch's permutation and rank 0 writes
the run folder.
"""
from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import CheckpointError, atomic_write_text, load_model, save_model
from ..config import TrainConfig
from ..distributed import gather_objects, init_from_env
from ..modality import for_checkpoint, for_dataset
from .objectives import create_objective, get_objective_class
from .trainer import Trainer, TrainResult, progress_default
from .validation import validator

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(name)


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


def open_run(cfg: TrainConfig, *, resume: bool, overwrite: bool) -> tuple[TrainConfig, Path]:
    """Validate ``cfg`` and find its run folder; on resume the folder's saved config wins.

    Refuses to start over a folder that holds a run unless asked to: losing hours of training to a
    reused name is the worst outcome of a typo.
    """
    cfg.validate()
    run_dir = run_dir_for(cfg)
    if resume:
        if not (run_dir / "state.safetensors").is_file():
            raise FileNotFoundError(f"Cannot resume: {run_dir} holds no state.safetensors (no finished epoch).")
        cfg = TrainConfig.from_yaml(run_dir / "config.yaml")
    elif (run_dir / "state.safetensors").is_file() and not overwrite:
        raise FileExistsError(f"Run folder {run_dir} already holds a run. Use --resume to continue it, "
                              "--overwrite to start again, or another --name.")
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
    """Create the run folder; a fresh run clears a previous run's files and writes its resolved config."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        for stale in ("metrics.jsonl", "best.safetensors", "last.safetensors", "state.safetensors"):
            (run_dir / stale).unlink(missing_ok=True)
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool | None = None,
          overwrite: bool = False) -> TrainResult:
    """Train (or resume) a model as the config says; returns the history and the best epoch.

    Under ``torchrun`` it trains with DistributedDataParallel: ``batch_size`` is the global batch,
    each rank crafts adversarial examples for its share on the bare module, rank 0 writes the run
    folder, and a worker restarted by ``--max-restarts`` resumes from the last finished epoch.
    """
    if elastic_restart() and (run_dir_for(cfg) / "state.safetensors").is_file():
        resume, overwrite = True, False  # never wipe the run a failed worker left behind
    cfg, run_dir = open_run(cfg, resume=resume, overwrite=overwrite)
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
        if resume:
            trainer.restore()
        result = trainer.fit()
        result.extra.update(params_doc)
        if world > 1:
            result.extra["ddp"] = check_ranks_agree(model, world)
    if world > 1:
        dist.barrier()
    return result


def _methods_for(modality: str) -> list[str]:
    from .objectives import available_objectives
    return [m for m in available_objectives() if modality in get_objective_class(m).modalities]
