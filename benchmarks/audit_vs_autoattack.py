"""Issue 12: robustkit's audit presets side by side with the original AutoAttack, in one run.

For each model (a run folder with its data set and eps), on the first --n test images, one thread each:
the original AutoAttack's `standard` version (../shared/peers/autoattack, unmodified: APGD-CE, APGD-T with
9 targets, FAB-T with 9 targets, Square with 5,000 queries) and robustkit's presets `quick`, `fast`,
`standard` and `thorough`. Reports robust accuracy (with the sample count and a 95% interval), CPU and wall
seconds, the speed ratio to the reference (CPU time: one thread each, so it does not move with the load of a
shared machine) and the per-attack breakdown (what each attack broke and how long it took).

    OMP_NUM_THREADS=1 python benchmarks/audit_vs_autoattack.py \\
        runs/fmnist-fast-house:fashion-mnist:0.1 runs/mnist-fast-house:mnist:0.3 \\
        --data-dir fashion-mnist=/usr/share/datasets/fashion-mnist --data-dir mnist=../shared/data/mnist

Writes benchmarks/results/audit_vs_autoattack.json and prints the Markdown table of BENCHMARKS.md.
`--with pgd20,pgd100x10,square` adds single-attack columns; `--presets` picks presets.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from robustkit import ThreatModel, evaluate
from robustkit.checkpoint import atomic_write_text, load_model
from robustkit.data import load_dataset
from robustkit.evaluation.provenance import environment, sha256_tensors
from robustkit.evaluation.stats import accuracy_with_ci

ROOT = Path(__file__).resolve().parent
PEERS = Path(os.environ.get("ROBUSTKIT_PEERS", ROOT.parents[1] / "shared" / "peers"))
EXTRA = {"pgd20": [("pgd", {"steps": 20})], "pgd100x10": [("pgd", {"steps": 100, "restarts": 10})],
         "square": [("square", {"n_queries": 5000})]}


def run_reference(model, x, y, eps: float, seed: int, batch_size: int) -> dict | None:
    """The original AutoAttack, `standard` version; per-attack times parsed from its own log."""
    if not (PEERS / "autoattack").is_dir():
        print(f"the original AutoAttack is not at {PEERS / 'autoattack'}: reference column missing", file=sys.stderr)
        return None
    sys.path.insert(0, str(PEERS))
    try:
        from autoattack import AutoAttack
    finally:
        sys.path.remove(str(PEERS))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "aa.log"
        adversary = AutoAttack(model, norm="Linf", eps=eps, version="standard", device=str(x.device), seed=seed,
                               log_path=str(log))
        t0 = time.perf_counter()
        x_adv = adversary.run_standard_evaluation(x.clone(), y.clone(), bs=batch_size)
        seconds = time.perf_counter() - t0
        text = log.read_text()
    with torch.no_grad():
        robust = int((model(x_adv).argmax(1) == y).sum())
    assert float((x_adv - x).abs().max()) <= eps + 1e-5, "reference left the eps ball"
    attacks, before = [], None
    n = x.shape[0]
    m = re.search(r"initial accuracy: ([\d.]+)%", text)
    before = round(float(m.group(1)) * n / 100) if m else None
    last_t = 0.0
    for name, acc, total in re.findall(r"robust accuracy after ([\w-]+): ([\d.]+)% \(total time ([\d.]+) s\)", text):
        k = round(float(acc) * n / 100)
        attacks.append({"name": name, "n_attacked": before, "n_broken": None if before is None else before - k,
                        "seconds": round(float(total) - last_t, 2)})
        before, last_t = k, float(total)
    return {"robust": robust, "robust_accuracy": accuracy_with_ci(robust, n), "seconds": round(seconds, 2),
            "attacks": attacks, "config": {"version": "standard", "norm": "Linf", "eps": eps, "seed": seed,
                                           "source": "../shared/peers/autoattack (fra31/auto-attack a392200)"}}


def _earlier_reference(path: str, row: dict, seed: int) -> dict:
    """The reference column of an earlier run of this script, checked to be the same model, data and seed."""
    doc = json.loads(Path(path).read_text())
    for r in doc["rows"]:
        ref = r["results"].get("autoattack")
        if ref and r["sha256"] == row["sha256"] and r["data_sha256"] == row["data_sha256"] and doc["seed"] == seed:
            return {**ref, "from": f"{path} (an earlier run of this script, {doc['environment'].get('git_commit')})"}
    raise SystemExit(f"{path} holds no reference result for {row['model']} with the same checkpoint, data and seed")


def run_robustkit(model, x, y, threat, seed, batch_size, preset="standard", attacks=None) -> dict:
    res = evaluate(model, x, y, threat, preset, attacks=attacks, seed=seed, batch_size=batch_size)
    d = res.to_dict(per_sample=False)
    return {"robust": int(res.robust.sum()), "robust_accuracy": d["robust_accuracy"], "seconds": round(res.seconds, 2),
            "clean": int(res.clean_correct.sum()),
            "attacks": [{k: a[k] for k in ("name", "n_attacked", "n_broken", "seconds")} for a in d["attacks"]],
            "config": [[a["name"], a["params"]] for a in d["attacks"]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="RUN:DATA:EPS, e.g. runs/fmnist-fast-house:fashion-mnist:0.1")
    ap.add_argument("--data-dir", action="append", default=[], help="DATA=FOLDER (repeatable)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--presets", default="quick,fast,standard,thorough")
    ap.add_argument("--with", dest="extra", default="", help="extra columns: pgd20,pgd100x10,square")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--reference-from", default=None,
                    help="reuse the original AutoAttack's result of an earlier run of this script (a JSON it wrote) for "
                         "the same model, data, seed and n instead of running it again; the speed-up then compares "
                         "CPU seconds across two processes, and the row says so")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "audit_vs_autoattack.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dirs = dict(d.split("=", 1) for d in args.data_dir)
    rows = []
    for spec in args.models:
        run, data, eps = spec.rsplit(":", 2)
        eps = float(eps)
        ds = load_dataset(data, data_dir=dirs.get(data))
        x, y = ds.x_test[:args.n], ds.y_test[:args.n]
        threat = ThreatModel("linf", eps, tuple(ds.bounds))
        model, meta = load_model(run)
        model.eval()
        with torch.no_grad():
            clean = int((model(x).argmax(1) == y).sum())
        row = {"model": Path(run).name, "data": data, "eps": eps, "n": int(x.shape[0]), "clean": clean,
               "checkpoint": meta["path"], "sha256": meta["sha256"], "data_sha256": sha256_tensors(x, y),
               "method": (meta.get("method") or {}).get("name"), "results": {}}
        columns = [] if args.no_reference or args.reference_from else [
            ("autoattack", lambda: run_reference(model, x, y, eps, args.seed, args.batch_size))]
        if args.reference_from:
            row["results"]["autoattack"] = _earlier_reference(args.reference_from, row, args.seed)
        columns += [(p, lambda p=p: run_robustkit(model, x, y, threat, args.seed, args.batch_size, p))
                    for p in args.presets.split(",") if p]
        columns += [(e, lambda e=e: run_robustkit(model, x, y, threat, args.seed, args.batch_size,
                                                  attacks=EXTRA[e])) for e in args.extra.split(",") if e]
        for key, fn in columns:
            cpu0 = time.process_time()
            v = fn()
            if v is not None:
                v["cpu_seconds"] = round(time.process_time() - cpu0, 2)
            row["results"][key] = v
            print(f"{row['model']} {key}: " + ("n/a" if v is None else
                                               f"{v['robust']}/{row['n']} in {v['seconds']:.1f}s"),
                  file=sys.stderr, flush=True)
        ref = row["results"].get("autoattack")
        for key, v in row["results"].items():
            if v is not None and ref is not None and key != "autoattack":
                # CPU seconds of this one-thread process: the machine is shared, and wall time moves with
                # whatever else runs; the CPU time an attack needs does not (wall seconds are kept beside it)
                v["speedup"] = round(ref["cpu_seconds"] / max(v["cpu_seconds"], 1e-9), 2)
                v["speedup_wall"] = round(ref["seconds"] / max(v["seconds"], 1e-9), 2)
                v["minus_reference"] = v["robust"] - ref["robust"]
        rows.append(row)
    doc = {"n": args.n, "seed": args.seed, "batch_size": args.batch_size, "threads": args.threads,
           "environment": environment(), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1))
    print(markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    lines = [f"First {doc['n']} test images, linf, seed {doc['seed']}, {doc['threads']} thread(s), batch "
             f"{doc['batch_size']}; robust = samples still correctly classified.", "",
             "| model | eps | clean | audit | robust | robust acc. (95% CI) | vs reference | CPU s (wall s) | speed-up |"
             " per attack: broken / wall seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        for key, v in r["results"].items():
            if v is None:
                continue
            ra = v["robust_accuracy"]
            per = ", ".join(f"{a['name']} {a['n_broken']}/{a['seconds']:.0f}s" for a in v["attacks"])
            name = "original AutoAttack (standard)" if key == "autoattack" else f"robustkit `{key}`"
            diff = "" if key == "autoattack" else f"{v.get('minus_reference', 0):+d}"
            lines.append(f"| {r['model']} | {r['eps']} | {r['clean']}/{r['n']} | {name} | {v['robust']} | "
                         f"{100 * ra['value']:.1f}% ({100 * ra['ci95'][0]:.1f}-{100 * ra['ci95'][1]:.1f}) | {diff} | "
                         f"{v.get('cpu_seconds', float('nan')):.0f} ({v['seconds']:.0f}) | "
                         f"{v.get('speedup', '') if key != 'autoattack' else ''} | {per} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
