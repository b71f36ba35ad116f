"""The quick-start job on embedded data: train, attack, compare, write a report folder."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from . import attacks
from ._validation import parse_fraction
from .attacks.batched import attack_in_batches
from .checkpoint import atomic_write_text, load_model
from .config import TrainConfig
from .data import load_dataset
from .plots import adversarial_grid
from .threat import ThreatModel
from .training import train


def run_demo(out: Path, *, epochs: int = 15, eps: str | float = 0.2, seed: int = 0, progress: bool = False,
             echo: Callable[[str], None] = print) -> dict:
    out = Path(out)
    eps = parse_fraction(eps)
    ds = load_dataset("digits")
    threat = ThreatModel("linf", eps, ds.bounds)
    rows = []
    for method in ("standard", "fast"):
        cfg = TrainConfig(name=method, out_dir=str(out), data="digits", model="small-cnn", method=method, eps=eps,
                          epochs=epochs, batch_size=64, optimizer="sgd", lr=0.05, schedule="cyclic", seed=seed,
                          eval_size=200)
        echo(f"training {method} ({epochs} epochs on digits, small-cnn) ...")
        t0 = time.perf_counter()
        result = train(cfg, overwrite=True, progress=progress)
        train_s = time.perf_counter() - t0
        model, _ = load_model(result.run_dir)
        pgd = attacks.create("pgd", threat, steps=20, seed=seed)
        t0 = time.perf_counter()
        x_adv, pc, pa = attack_in_batches(pgd, model, ds.x_test, ds.y_test, progress=progress)
        atk_s = time.perf_counter() - t0
        adversarial_grid(result.run_dir / "grid.png", ds.x_test, x_adv, ds.y_test, pc, pa, ds.class_names)
        rows.append({"method": method, "clean_accuracy": float((pc == ds.y_test).float().mean()),
                     "robust_accuracy": float((pa == ds.y_test).float().mean()), "n": int(ds.y_test.shape[0]),
                     "train_seconds": train_s, "attack_seconds": atk_s, "run_dir": str(result.run_dir)})
    doc = {"data": "digits", "model": "small-cnn", "threat": threat.to_dict(), "attack": pgd.params(),
           "results": rows}
    atomic_write_text(out / "demo.json", json.dumps(doc, indent=2))
    lines = ["# robustkit demo", "", f"PGD-20 (linf, eps={eps:g}) on the {rows[0]['n']} digits test images.", "",
             "| method | clean accuracy | robust accuracy | training (s) |", "|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['clean_accuracy']:.3f} | {r['robust_accuracy']:.3f} | {r['train_seconds']:.1f} |"
              for r in rows]
    lines += ["", "Training curves: `standard/curve.png`, `fast/curve.png`; examples: `*/grid.png`."]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    echo("")
    echo(f"{'method':<10} {'clean':>7} {'PGD-20':>7}")
    for r in rows:
        echo(f"{r['method']:<10} {r['clean_accuracy']:>7.3f} {r['robust_accuracy']:>7.3f}")
    echo(f"report: {out / 'report.md'}")
    return doc
