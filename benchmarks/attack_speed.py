"""PGD-20 throughput against its floor cost and against torchattacks, side by side in one run.

Floor: 20 forward+backward passes (gradient w.r.t. the input only) on the same batch — what any
20-step PGD must at least pay. robustkit's PGD is timed with early stopping off (the same work as
the floor and as torchattacks) and on (its default for evaluation, where fooled samples leave the
batch). Usage: python benchmarks/attack_speed.py [--data-dir DIR] [--batch 256] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_model, machine_info, write_result  # noqa: E402

from robustkit import ThreatModel, attacks  # noqa: E402


def timed_interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds per function, timed in interleaved rounds so load drifts hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--eps", type=float, default=0.1)
    args = ap.parse_args(argv)
    model, ds = bench_model("fashion-mnist", args.data_dir)
    x, y = ds.x_test[: args.batch], ds.y_test[: args.batch]
    steps, eps = 20, args.eps
    threat = ThreatModel("linf", eps)

    def floor():
        for _ in range(steps):
            xr = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)

    ours = attacks.create("pgd", threat, steps=steps, step_size=2.5 * eps / steps, early_stop=False)
    ours_es = attacks.create("pgd", threat, steps=steps, step_size=2.5 * eps / steps)
    fns = {"floor (20 fwd+bwd)": floor,
           "robustkit pgd (no early stop)": lambda: ours(model, x, y),
           "robustkit pgd (early stop)": lambda: ours_es(model, x, y)}
    try:
        import torchattacks
        ta = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
        fns["torchattacks PGD"] = lambda: ta(x, y)
    except ImportError:
        pass
    rows = timed_interleaved(fns, args.repeats)
    rows.setdefault("torchattacks PGD", None)
    n = x.shape[0]
    result = {"batch": n, "steps": steps, "eps": eps, "seconds": rows,
              "images_per_second": {k: (n / v if v else None) for k, v in rows.items()},
              "ratio_to_floor": {k: (rows["floor (20 fwd+bwd)"] / v if v else None) for k, v in rows.items()},
              "machine": machine_info()}
    write_result("attack_speed", result)
    print(f"| PGD-20, small-cnn, Fashion-MNIST, batch {n} | seconds | images/s | throughput vs floor |")
    print("|---|---|---|---|")
    for k, v in rows.items():
        if v is None:
            print(f"| {k} | not installed | | |")
        else:
            print(f"| {k} | {v:.3f} | {n / v:.0f} | {rows['floor (20 fwd+bwd)'] / v:.2f}x |")


if __name__ == "__main__":
    main()
