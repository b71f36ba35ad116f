"""Issue 12: where an audit's time goes, per attack of a preset: model forward passes, backward passes (input
gradients) and everything else (the attacks' own bookkeeping), with the number of images pushed through the
model. The basis of the speed work: an attack is only as cheap as the forward/backward passes it needs.

    OMP_NUM_THREADS=1 python benchmarks/audit_profile.py runs/fmnist-fast-house:fashion-mnist:0.1 \\
        --data-dir fashion-mnist=/usr/share/datasets/fashion-mnist --preset standard --n 500

Writes benchmarks/results/audit_profile.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from robustkit import ThreatModel
from robustkit.checkpoint import atomic_write_text, load_model
from robustkit.data import load_dataset
from robustkit.evaluation import robustness

ROOT = Path(__file__).resolve().parent
STATS: dict = defaultdict(lambda: {"forward_s": 0.0, "backward_s": 0.0, "forward_images": 0, "backward_calls": 0})
CURRENT = ["setup"]


class Timed(nn.Module):
    """Times every forward pass of the wrapped model, charged to the attack running now."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        t0 = time.perf_counter()
        out = self.inner(x)
        s = STATS[CURRENT[0]]
        s["forward_s"] += time.perf_counter() - t0
        s["forward_images"] += int(x.shape[0])
        return out


def _instrument() -> None:
    grad = torch.autograd.grad

    def timed_grad(*a, **k):
        t0 = time.perf_counter()
        out = grad(*a, **k)
        s = STATS[CURRENT[0]]
        s["backward_s"] += time.perf_counter() - t0
        s["backward_calls"] += 1
        return out
    torch.autograd.grad = timed_grad
    run_chunks = robustness._run_chunks

    def labelled(state, attack, name, seed, idx, key=""):
        CURRENT[0] = f"{len(done)}:{name}"
        done.append(name)
        t0 = time.perf_counter()
        out = run_chunks(state, attack, name, seed, idx, key)
        STATS[CURRENT[0]]["total_s"] = time.perf_counter() - t0
        STATS[CURRENT[0]]["attacked"] = int(idx.numel())
        CURRENT[0] = "verify"
        return out
    done: list = []
    robustness._run_chunks = labelled


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="RUN:DATA:EPS")
    ap.add_argument("--data-dir", action="append", default=[], help="DATA=FOLDER")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "audit_profile.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run, data, eps = args.model.rsplit(":", 2)
    ds = load_dataset(data, data_dir=dict(d.split("=", 1) for d in args.data_dir).get(data))
    x, y = ds.x_test[:args.n], ds.y_test[:args.n]
    model, _ = load_model(run)
    timed = Timed(model.eval()).eval()
    _instrument()
    t0 = time.perf_counter()
    res = robustness.evaluate(timed, x, y, ThreatModel("linf", float(eps), tuple(ds.bounds)), args.preset,
                              seed=0, batch_size=args.batch_size)
    total = time.perf_counter() - t0
    rows = []
    for key, s in STATS.items():
        if "total_s" not in s:
            continue
        rec = next(a for i, a in enumerate(res.attacks) if f"{i}:{a['name']}" == key)
        other = s["total_s"] - s["forward_s"] - s["backward_s"]
        rows.append({"attack": key.split(":", 1)[1], "params": {k: v for k, v in rec["params"].items()
                                                                 if k not in ("attack", "threat", "model_mode")},
                     "attacked": s["attacked"], "broken": rec["n_broken"], "seconds": round(s["total_s"], 2),
                     "share": round(s["total_s"] / total, 3), "forward_s": round(s["forward_s"], 2),
                     "backward_s": round(s["backward_s"], 2), "other_s": round(other, 2),
                     "forward_images": s["forward_images"], "backward_calls": s["backward_calls"]})
    doc = {"model": run, "data": data, "eps": float(eps), "n": args.n, "preset": args.preset, "threads": args.threads,
           "seconds": round(total, 2), "robust": int(res.robust.sum()), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1))
    print(f"{run} {data} eps={eps} preset {args.preset}, n={args.n}, {args.threads} thread(s): {total:.0f} s, "
          f"robust {doc['robust']}/{args.n}\n")
    print("| attack | attacked | broken | seconds | share | forward s | backward s | other s | images forwarded |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['attack']} | {r['attacked']} | {r['broken']} | {r['seconds']:.1f} | {100 * r['share']:.0f}% | "
              f"{r['forward_s']:.1f} | {r['backward_s']:.1f} | {r['other_s']:.1f} | {r['forward_images']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
