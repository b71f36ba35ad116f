"""Acceptance 1 (and 3): robustkit's `standard` preset vs PGD-20, PGD-100x10 and torchattacks' AutoAttack.

On the same first N test images, with the same eps, side by side in one run, with wall times.
torchattacks 3.5.1 is installed with `pip install --no-deps torchattacks==3.5.1` (`make bench` does it);
without it the AutoAttack column is reported as missing. Square alone (5,000 queries) is also run
(acceptance 3: it should bring a standard-trained model below 10% at eps=0.1).

Usage:
    python benchmarks/audit_vs_autoattack.py runs/fmnist-standard runs/fmnist-fast runs/fmnist-pgd \
        --data fashion-mnist --n 1000 --eps 0.1
Writes benchmarks/results/audit_vs_autoattack.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from robustkit import ThreatModel, evaluate
from robustkit.checkpoint import atomic_write_text, load_model
from robustkit.data import load_dataset
from robustkit.evaluation.provenance import environment, sha256_tensors

ROOT = Path(__file__).resolve().parent


def run_torchattacks(model, x, y, eps, seed, batch_size, num_classes):
    try:
        import torchattacks
    except ImportError:
        return None
    atk = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=num_classes, seed=seed)
    t0 = time.perf_counter()
    robust = []
    for i in range(0, x.shape[0], batch_size):
        xa = atk(x[i:i + batch_size], y[i:i + batch_size])
        with torch.no_grad():
            robust.append(model(xa).argmax(1) == y[i:i + batch_size])
    return {"robust_accuracy": float(torch.cat(robust).float().mean()), "seconds": time.perf_counter() - t0,
            "config": {"version": "standard", "norm": "Linf", "eps": eps, "seed": seed,
                       "torchattacks": getattr(torchattacks, "__version__", "?")}}


def run_robustkit(model, x, y, threat, seed, batch_size, preset="standard", attacks=None):
    res = evaluate(model, x, y, threat, preset, attacks=attacks, seed=seed, batch_size=batch_size)
    d = res.to_dict(per_sample=False)
    return {"robust_accuracy": res.robust_accuracy, "ci95": d["robust_accuracy"]["ci95"], "seconds": res.seconds,
            "clean_accuracy": res.clean_accuracy,
            "attacks": [{k: a[k] for k in ("name", "n_attacked", "n_broken", "seconds")} for a in d["attacks"]],
            "config": [a["params"] for a in d["attacks"]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="run folders or .safetensors checkpoints")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--skip", nargs="*", default=[], help="columns to skip: pgd20 pgd100x10 square autoattack")
    ap.add_argument("--out", default=str(ROOT / "results" / "audit_vs_autoattack.json"))
    args = ap.parse_args(argv)

    ds = load_dataset(args.data, data_dir=args.data_dir)
    x, y = ds.x_test[:args.n], ds.y_test[:args.n]
    threat = ThreatModel("linf", args.eps, tuple(ds.bounds))
    rows = []
    for ck in args.checkpoints:
        model, meta = load_model(ck)
        row = {"checkpoint": meta["path"], "sha256": meta["sha256"], "method": (meta.get("method") or {}).get("name")}
        columns = {"standard": lambda: run_robustkit(model, x, y, threat, args.seed, args.batch_size),
                   "pgd20": lambda: run_robustkit(model, x, y, threat, args.seed, args.batch_size,
                                                  attacks=[("pgd", {"steps": 20})]),
                   "pgd100x10": lambda: run_robustkit(model, x, y, threat, args.seed, args.batch_size,
                                                      attacks=[("pgd", {"steps": 100, "restarts": 10})]),
                   "square": lambda: run_robustkit(model, x, y, threat, args.seed, args.batch_size,
                                                   attacks=[("square", {"n_queries": 5000})]),
                   "autoattack": lambda: run_torchattacks(model, x, y, args.eps, args.seed, args.batch_size,
                                                          ds.num_classes)}
        for key, fn in columns.items():
            if key in args.skip and key != "standard":
                continue
            row[key] = fn()
            v = row[key]
            print(f"{ck} {key}: " + ("n/a" if v is None else f"{v['robust_accuracy']:.4f} in {v['seconds']:.1f}s"),
                  file=sys.stderr, flush=True)
        s = row["standard"]["robust_accuracy"]
        row["checks"] = {
            "standard<=pgd20": s <= row["pgd20"]["robust_accuracy"] if "pgd20" in row else None,
            "standard<=pgd100x10": s <= row["pgd100x10"]["robust_accuracy"] if "pgd100x10" in row else None,
            "standard<=autoattack+0.003": (s <= row["autoattack"]["robust_accuracy"] + 0.003
                                           if row.get("autoattack") else None)}
        rows.append(row)
    doc = {"data": args.data, "n": int(x.shape[0]), "eps": args.eps, "seed": args.seed,
           "data_sha256": sha256_tensors(x, y), "environment": environment(), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1))
    print(markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    cols = [("standard", "robustkit standard"), ("pgd20", "PGD-20"), ("pgd100x10", "PGD-100x10"),
            ("autoattack", "torchattacks AA"), ("square", "Square-5000")]
    head = ["model", "clean"] + [c[1] for c in cols]
    lines = [f"Fashion-MNIST-style audit: {doc['data']}, n={doc['n']}, linf eps={doc['eps']}, seed={doc['seed']}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["rows"]:
        cells = [r.get("method") or Path(r["checkpoint"]).parent.name,
                 f"{100 * r['standard']['clean_accuracy']:.1f}%"]
        for key, _ in cols:
            v = r.get(key)
            cells.append("n/a" if not v else f"{100 * v['robust_accuracy']:.1f}% ({v['seconds']:.0f}s)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
