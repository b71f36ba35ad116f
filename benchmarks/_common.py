"""Helpers shared by the benchmarks: a standard model to measure on, result files, machine info."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

from robustkit.checkpoint import atomic_write_text, load_model
from robustkit.config import TrainConfig
from robustkit.data import load_dataset

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = Path(os.environ.get("ROBUSTKIT_BENCH_RUNS", Path(__file__).resolve().parents[1] / "runs" / "bench"))


def machine_info() -> dict:
    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "platform": platform.platform(), "load_average": os.getloadavg()}


def write_result(name: str, doc: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(doc, indent=2))
    return path


def bench_model(data: str, data_dir=None, *, epochs: int = 1):
    """A normally trained small-cnn (trained once, then reused from runs/bench)."""
    from robustkit.training import train
    run = RUNS / f"{data}-small-cnn-standard-{epochs}"
    ds = load_dataset(data, data_dir=data_dir)
    if not (run / "last.safetensors").is_file():
        cfg = TrainConfig(name=run.name, out_dir=str(RUNS), data=data, data_dir=data_dir, model="small-cnn",
                          method="standard", epochs=epochs, optimizer="adam", lr=1e-3, weight_decay=0.0,
                          schedule="constant", eval_size=500, eps=0.1)
        train(cfg, overwrite=True, progress=False)
    model, _ = load_model(run / "last.safetensors")
    return model.eval(), ds
