"""Issue 4, acceptance 2 and 4, measured on real data (the unit tests check the same on small batches).

1. Gradient masking: a trained Fashion-MNIST model and its *masked twin* (the same function, but the
   input gradient is stopped: ``x.detach() + 0 * x``). A naive white-box attack on the twin reports it
   as robust; robustkit's audit must flag it (sanity checks) and, through Square and a transfer attack
   from the unmasked model, bring its robust accuracy close to the honest one.
2. Certification (Cohen et al. 2019): an MLP trained with Gaussian noise augmentation on scikit-learn's
   digits, certified with randomized smoothing on the whole digits test split.

Usage:
    python benchmarks/audit_checks.py runs/fmnist-standard-wong2 --n 500
Writes benchmarks/results/audit_checks.json and prints a summary.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robustkit import ThreatModel, attacks
from robustkit.checkpoint import load_model
from robustkit.data import load_dataset
from robustkit.evaluation import certify, evaluate, gradient_masking_checks
from robustkit.models import model_for_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_result  # noqa: E402


class MaskedGradient(nn.Module):
    """The same function as ``inner`` with a zero input gradient (what a broken defence looks like)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.detach() + 0 * x)


def masking(checkpoint: str, n: int, eps: float, seed: int) -> dict:
    model, meta = load_model(checkpoint)
    masked = MaskedGradient(model).eval()
    ds = load_dataset("fashion-mnist")
    x, y = ds.x_test[:n], ds.y_test[:n]
    threat = ThreatModel("linf", eps, tuple(ds.bounds))
    out = {"checkpoint": meta["path"], "sha256": meta["sha256"], "n": n, "eps": eps}

    t0 = time.perf_counter()
    x_adv = attacks.create("apgd-ce", threat, steps=100)(masked, x, y)
    with torch.no_grad():
        out["naive_white_box_on_masked"] = {"attack": "apgd-ce, 100 steps",
                                            "accuracy": float((masked(x_adv).argmax(1) == y).float().mean()),
                                            "seconds": time.perf_counter() - t0}
    for key, m, surrogate in (("honest_model", model, None), ("masked_twin", masked, model)):
        res = evaluate(m, x, y, threat, "standard", seed=seed, surrogate=surrogate)
        out[key] = {"clean_accuracy": res.clean_accuracy, "robust_accuracy": res.robust_accuracy,
                    "mode": res.mode, "notes": list(res.notes), "seconds": res.seconds,
                    "attacks": [{k: a.get(k) for k in ("name", "status", "n_attacked", "n_broken", "seconds")}
                                for a in res.attacks]}
        checks = gradient_masking_checks(m, x, y, threat, result=res, seed=seed, n=200)
        out[key]["sanity"] = {c["name"]: {"status": c["status"], "message": c.get("message")} for c in checks}
    return out


def certification(sigma: float, n0: int, n: int, alpha: float, seed: int) -> dict:
    ds = load_dataset("digits")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_for_dataset("mlp", ds)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        x, y = ds.x_train, ds.y_train
        for _ in range(30):  # Gaussian noise augmentation at the certification sigma
            perm = torch.randperm(x.shape[0])
            for i in range(0, x.shape[0], 128):
                idx = perm[i:i + 128]
                loss = F.cross_entropy(model(x[idx] + sigma * torch.randn_like(x[idx])), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    model.eval()
    with torch.no_grad():
        base = float((model(ds.x_test).argmax(1) == ds.y_test).float().mean())
    t0 = time.perf_counter()
    res = certify(model, ds.x_test, ds.y_test, sigma, n0=n0, n=n, alpha=alpha,
                  radii=[0.0, 0.25, 0.5, 0.75, 1.0, 1.25], seed=seed)
    return {"data": "digits", "n_test": int(ds.x_test.shape[0]), "sigma": sigma, "n0": n0, "n": n, "alpha": alpha,
            "base_clean_accuracy": base, "smoothed_accuracy": res["smoothed_accuracy"],
            "certified_accuracy": [dict(c, radius=r) for r, c in zip(res["radii"], res["certified_accuracy"])],
            "abstain_rate": res["abstain_rate"],
            "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="a Fashion-MNIST run folder or checkpoint (normally trained)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--sigma", type=float, default=0.25)
    ap.add_argument("--cert-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cert = certification(args.sigma, 100, args.cert_n, 0.001, args.seed)
    mask = masking(args.checkpoint, args.n, args.eps, args.seed)
    write_result("audit_checks", {"machine": machine_info(), "masking": mask, "certification": cert})
    print(f"masked twin: naive APGD-CE {mask['naive_white_box_on_masked']['accuracy']:.3f}, audit "
          f"{mask['masked_twin']['robust_accuracy']:.3f} ({mask['masked_twin']['mode']}), honest model "
          f"{mask['honest_model']['robust_accuracy']:.3f}")
    for who in ("honest_model", "masked_twin"):
        print(who, {k: v["status"] for k, v in mask[who]["sanity"].items()})
    print(f"certification: base {cert['base_clean_accuracy']:.3f}, smoothed {cert['smoothed_accuracy']['value']:.3f}, "
          f"abstain {cert['abstain_rate']['value']:.3f}, certified "
          + ", ".join(f"r={c['radius']}: {c['value']:.3f}" for c in cert["certified_accuracy"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
