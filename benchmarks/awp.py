"""AWP vs PGD-AT on Fashion-MNIST at eps 0.1: equal epochs, audited with the `standard` preset (with CIs).

    OMP_NUM_THREADS=1 python benchmarks/awp.py --data-dir ../shared/data --n 500

Trains `configs/fmnist-pgd.yaml` and `configs/fmnist-awp.yaml` on wong-cnn width 2 (cheaper than
small-cnn on 2 cores; override with --model), skips runs that already finished, then runs
`robustkit audit RUN --preset standard --limit N` on each and writes benchmarks/results/awp.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n", type=int, default=500, help="test images audited")
    ap.add_argument("--model", default="wong-cnn")
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    rk = [sys.executable, "-m", "robustkit"]
    rows = []
    for name in ("pgd", "awp"):
        run_name = f"bench-fmnist-{name}-{args.model}{args.width}" + ("" if args.epochs == 4 else f"-e{args.epochs}")
        run_dir = ROOT / "runs" / run_name
        sets = ["--set", f"model={args.model}", "--set", f"model_args={{width: {args.width}}}",
                "--set", f"epochs={args.epochs}", "--name", run_name]
        if args.data_dir:
            sets += ["--data-dir", args.data_dir]
        train_s = None
        if not (run_dir / "audit.json").is_file():
            train_s = run(rk + ["train", "--config", f"configs/fmnist-{name}.yaml", *sets, "--overwrite", "-v"])
            audit_s = run(rk + ["audit", str(run_dir), "--preset", "standard", "--limit", str(args.n)]
                          + (["--data-dir", args.data_dir] if args.data_dir else []))
        else:
            audit_s = None
        doc = json.loads((run_dir / "audit.json").read_text())
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
        ev = doc["evaluation"]
        rows.append({"method": name, "run": run_name, "epochs": len(metrics),
                     "epoch_seconds": [round(m["epoch_seconds"], 1) for m in metrics],
                     "train_seconds": train_s, "audit_seconds": audit_s, "n": ev["n"],
                     "clean_accuracy": ev["clean_accuracy"], "robust_accuracy": ev["robust_accuracy"],
                     "attacks": [{k: a[k] for k in ("name", "n_attacked", "n_broken", "seconds")} for a in ev["attacks"]],
                     "verdict": doc["verdict"]["status"]})
        print(json.dumps(rows[-1], indent=1), flush=True)
    out = ROOT / "benchmarks" / "results" / "awp.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    results = results if "runs" in results else {"runs": {}}
    results["runs"][f"{args.epochs} epochs, n={args.n}"] = {"command": " ".join(sys.argv), "rows": rows}
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
