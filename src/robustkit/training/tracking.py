"""Experiment tracking beside the run folder: MLflow or Weights & Biases (``log: [mlflow]``, ``--log mlflow``).

The run folder stays the source of truth (metrics.jsonl, checkpoints, reports); a tracker mirrors it
into the team's tracking server: the config as parameters, one metrics row per epoch, and the run's
files (config, metrics, curve, reports) as artefacts. Both libraries are optional extras, imported
only when asked for. A resumed run continues the same tracked run (its id is kept in
``tracking.json`` in the run folder).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write_text
from .callbacks import Callback

log = logging.getLogger(__name__)

TRACKERS = ("mlflow", "wandb")
STATE_FILE = "tracking.json"
ARTIFACTS = ("config.yaml", "metrics.jsonl", "curve.png", "train.json", "train.md", "audit.json", "audit.md",
             "audit.html")


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
    return out


def _numbers(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k != "epoch"}


def _state(run_dir: Path) -> dict:
    p = run_dir / STATE_FILE
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, ValueError):
        return {}


class Tracker(Callback):
    """Mirrors a training run into a tracking backend; subclasses implement the four calls."""

    name = "tracker"

    def __init__(self, cfg, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)

    def on_epoch_end(self, trainer, epoch, row):
        if trainer.is_main:
            self.log_metrics(_numbers(row), step=epoch)
        return None

    def _remember(self, run_id: str) -> None:
        state = _state(self.run_dir)
        state[self.name] = run_id
        atomic_write_text(self.run_dir / STATE_FILE, json.dumps(state, indent=1))

    def finish(self, status: str = "FINISHED") -> None:
        files = [self.run_dir / f for f in ARTIFACTS if (self.run_dir / f).is_file()]
        self.log_files(files)
        self.end(status)

    # backend calls
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_files(self, files: list[Path]) -> None: ...
    def end(self, status: str) -> None: ...


class MLflowTracker(Tracker):
    """MLflow: ``$MLFLOW_TRACKING_URI`` when set, else a local store in ``<out_dir>/mlruns``."""

    name = "mlflow"

    def __init__(self, cfg, run_dir: Path):
        super().__init__(cfg, run_dir)
        try:
            import mlflow
        except ImportError:
            raise ModuleNotFoundError("log: mlflow needs the MLflow client: pip install 'robustkit[track]' "
                                      "(mlflow-skinny).") from None
        self.mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(cfg.out_dir).resolve() / "mlruns").as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps its file store in maintenance mode behind this switch; a local folder beside
            # the runs is what a CPU user without a server wants.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "robustkit"))
        previous = _state(self.run_dir).get(self.name)
        self.run = mlflow.start_run(run_id=previous) if previous else mlflow.start_run(run_name=run_dir.name)
        self.run_id = self.run.info.run_id
        if not previous:
            mlflow.log_params({k: ("" if v is None else v) for k, v in _flat(cfg.to_dict()).items()})
        self._remember(self.run_id)

    def log_metrics(self, metrics, step):
        self.mlflow.log_metrics(metrics, step=step)

    def log_files(self, files):
        for f in files:
            self.mlflow.log_artifact(str(f))

    def end(self, status):
        self.mlflow.end_run(status=status)


class WandbTracker(Tracker):
    """Weights & Biases; offline unless ``WANDB_MODE`` says otherwise (tests and CPU boxes have no network)."""

    name = "wandb"

    def __init__(self, cfg, run_dir: Path):
        super().__init__(cfg, run_dir)
        try:
            import wandb
        except ImportError:
            raise ModuleNotFoundError("log: wandb needs the Weights & Biases client: pip install wandb.") from None
        self.wandb = wandb
        previous = _state(self.run_dir).get(self.name)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "robustkit"), name=run_dir.name,
                              id=previous, resume="allow" if previous else None, config=cfg.to_dict(),
                              dir=str(run_dir), mode=os.environ.get("WANDB_MODE", "offline"))
        self._remember(self.run.id)

    def log_metrics(self, metrics, step):
        self.run.log(metrics, step=step)

    def log_files(self, files):
        for f in files:
            self.run.save(str(f), base_path=str(self.run_dir), policy="now")

    def end(self, status):
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


_BACKENDS = {"mlflow": MLflowTracker, "wandb": WandbTracker}


def make_trackers(cfg, run_dir: Path) -> list[Tracker]:
    """The trackers ``cfg.log`` asks for (``tensorboard`` is the trainer's own writer, not here)."""
    return [_BACKENDS[name](cfg, run_dir) for name in cfg.log if name in _BACKENDS]
