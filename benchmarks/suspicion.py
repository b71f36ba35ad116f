"""Which attack-suspicion signal separates PGD adversarial inputs from clean ones? (issue 14)

    OMP_NUM_THREADS=1 python benchmarks/suspicion.py --data-dir /usr/share/datasets/fashion-mnist --n 1000

For a standard and a Fast-AT small-cnn on Fashion-MNIST: PGD-20 (L-inf, eps 0.1) on the first N test
images, then each signal of :mod:`robustkit.serve.suspicion` on the clean and on the adversarial
inputs, and the ROC AUC of "adversarial vs clean" (all N adversarial inputs, and only those whose
attack succeeded). The standard model is `runs/bench/fashion-mnist-small-cnn-standard-1` (trained here
if absent, ~4 min); the Fast-AT model is `--fast-run` (default runs/fmnist-fast-house; trained from
configs/fmnist-fast.yaml with --fast-epochs if absent). Writes benchmarks/results/serve_suspicion.json.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_model, machine_info, write_result  # noqa: E402

from robustkit import ThreatModel, attacks  # noqa: E402
from robustkit.checkpoint import load_model  # noqa: E402
from robustkit.serve.suspicion import SIGNALS, suspicion_scores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def fast_model(run: Path, data_dir, epochs: int):
    if not (run / "best.safetensors").is_file():
        cmd = [sys.executable, "-m", "robustkit", "train", "--config", "configs/fmnist-fast.yaml", "--name", run.name,
               "--set", f"epochs={epochs}", "--overwrite"] + (["--data-dir", data_dir] if data_dir else [])
        subprocess.run(cmd, check=True, cwd=ROOT)
    return load_model(run)[0]


def measure(name, model, x, y, args) -> dict:
    threat = ThreatModel("linf", args.eps, (0.0, 1.0))
    t0 = time.perf_counter()
    x_adv = torch.cat([attacks.create("pgd", threat=threat, steps=args.steps, seed=0)(model, x[i:i + 250], y[i:i + 250])
                       for i in range(0, x.shape[0], 250)])
    attack_s = time.perf_counter() - t0
    with torch.inference_mode():
        pred, pred_adv = model(x).argmax(1), model(x_adv).argmax(1)
    fooled = pred_adv != y
    rows = []
    for sigma in args.sigmas:
        g = torch.Generator().manual_seed(0)
        clean = suspicion_scores(model, x, sigma=sigma, k=args.k, generator=g)
        adv = suspicion_scores(model, x_adv, sigma=sigma, k=args.k, generator=g)
        for sig in SIGNALS:
            if sig == "max_softmax" and sigma != args.sigmas[0]:
                continue  # does not depend on sigma
            s_clean, s_adv = clean[sig], adv[sig]
            labels = torch.cat([torch.zeros(len(s_clean)), torch.ones(len(s_adv))])
            auc_all = roc_auc_score(labels.numpy(), torch.cat([s_clean, s_adv]).numpy())
            n_f = int(fooled.sum())
            auc_fooled = (roc_auc_score(torch.cat([torch.zeros(len(s_clean)), torch.ones(n_f)]).numpy(),
                                        torch.cat([s_clean, s_adv[fooled]]).numpy()) if n_f else None)
            rows.append({"signal": sig, "sigma": None if sig == "max_softmax" else sigma, "k": args.k,
                         "auc_all_adversarial": round(float(auc_all), 4),
                         "auc_successful_adversarial": None if auc_fooled is None else round(float(auc_fooled), 4),
                         "mean_clean": round(float(s_clean.mean()), 4), "mean_adversarial": round(float(s_adv.mean()), 4)})
            print(f"{name:<9} {sig:<12} sigma={rows[-1]['sigma']} AUC all={auc_all:.3f} "
                  f"successful={'n/a' if auc_fooled is None else f'{auc_fooled:.3f}'}", flush=True)
    return {"model": name, "clean_accuracy": float((pred == y).float().mean()),
            "robust_accuracy_pgd": float((pred_adv == y).float().mean()), "n_fooled": int(fooled.sum()),
            "attack_seconds": round(attack_s, 1), "signals": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--k", type=int, default=8, help="noisy copies per input")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--fast-run", default=str(ROOT / "runs" / "fmnist-fast-house"))
    ap.add_argument("--fast-epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    standard, ds = bench_model("fashion-mnist", args.data_dir)
    fast = fast_model(Path(args.fast_run), args.data_dir, args.fast_epochs)
    x, y = ds.x_test[:args.n], ds.y_test[:args.n]
    results = [measure("standard", standard, x, y, args), measure("fast-at", fast, x, y, args)]
    doc = {"benchmark": "serve_suspicion", "data": "fashion-mnist", "n": args.n,
           "attack": {"name": "pgd", "norm": "linf", "eps": args.eps, "steps": args.steps},
           "k": args.k, "sigmas": args.sigmas, "results": results, "machine": machine_info(),
           "command": "python benchmarks/suspicion.py " + " ".join(sys.argv[1:])}
    print("wrote", write_result("serve_suspicion", doc))


if __name__ == "__main__":
    main()
