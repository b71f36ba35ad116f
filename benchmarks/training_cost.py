"""Cost of one training epoch per method, measured side by side in one run (issue 3, item 3).

Each method trains the same small-cnn on the same Fashion-MNIST subset for one epoch (validation
off, so only the training loop is timed); methods are interleaved over `--rounds` rounds and the
median epoch time is compared with `standard`'s. Usage:
  python benchmarks/training_cost.py [--data-dir DIR] [--limit 10000] [--pgd-steps 7] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_result  # noqa: E402

from robustkit.config import TrainConfig  # noqa: E402
from robustkit.training import train  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--pgd-steps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    methods = {"standard": {}, "fast": {}, "pgd": {"steps": args.pgd_steps},
               "awp": {"inner": "pgd", "inner_args": {"steps": args.pgd_steps}}}
    times: dict[str, list[float]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for method, margs in methods.items():
                cfg = TrainConfig(name=f"{method}-{r}", out_dir=tmp, data=args.data, data_dir=args.data_dir,
                                  limit=args.limit, model="small-cnn", method=method, method_args=margs, eps=0.1,
                                  epochs=1, eval_size=0, optimizer="adam", lr=1e-3, weight_decay=0.0,
                                  schedule="constant", val_size=0.01)
                res = train(cfg, overwrite=True, progress=False)
                times[method].append(res.history[0]["epoch_seconds"])
    med = {m: statistics.median(v) for m, v in times.items()}
    ratio = {m: med[m] / med["standard"] for m in med}
    # awp: PGD-AT plus one forward/backward for the weight perturbation; no limit was set for it
    limits = {"standard": 1.0, "fast": 2.3, "pgd": args.pgd_steps + 1.3, "awp": float("nan")}
    doc = {"data": args.data, "train_images": int(args.limit * 0.99), "pgd_steps": args.pgd_steps,
           "epoch_seconds": times, "median_seconds": med, "ratio_to_standard": ratio, "limits": limits,
           "machine": machine_info()}
    write_result("training_cost", doc)
    print(f"| method | median epoch (s), {doc['train_images']} images | x standard | limit |")
    print("|---|---|---|---|")
    for m in methods:
        print(f"| {m}{'-' + str(args.pgd_steps) if m in ('pgd', 'awp') else ''} | {med[m]:.2f} | {ratio[m]:.2f} | "
              f"{limits[m]:.1f} |")


if __name__ == "__main__":
    main()
