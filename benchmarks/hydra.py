"""Issue 13: does a robustness-aware pruning score (HYDRA, Sehwag et al., NeurIPS 2020) beat global magnitude
pruning + adversarial fine-tuning on the Fashion-MNIST Fast-AT small-cnn? Measured at equal training budget,
side by side in one run; the answer decides whether `robustkit harden` gets a HYDRA option.

For each sparsity:
- magnitude: global L1 magnitude pruning (torch.nn.utils.prune), then Fast-AT fine-tuning for
  --score-epochs + --epochs epochs, pruned weights kept at zero (robustkit.hardening.finetune);
- HYDRA: an importance score per weight, initialised from the weight's magnitude (scaled as the paper does),
  learned for --score-epochs epochs with the weights frozen under the same adversarial objective (Fast-AT):
  the forward pass uses w * 1[|s| in the global top (1 - sparsity)], the gradient reaches the scores through
  a straight-through estimator (HYDRA's GetSubnet); then the mask is fixed and the weights fine-tuned for
  --epochs epochs exactly as above.
Both: clean and PGD-20 accuracy on the full 10k test set (eps 0.1).

    OMP_NUM_THREADS=1 python benchmarks/hydra.py --data-dir /usr/share/datasets/fashion-mnist --sparsity 0.95,0.98

Writes benchmarks/results/hydra.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from robustkit.checkpoint import atomic_write_text, load_model
from robustkit.hardening.finetune import finetune
from robustkit.hardening.prune import magnitude_prune, prunable_layers, weight_sparsity
from robustkit.hardening.run import _train_config, evaluate_variant
from robustkit.modality import get_modality

ROOT = Path(__file__).resolve().parent


class _TopK(torch.autograd.Function):
    """1 where |score| is at least the global threshold; the backward pass is the identity (HYDRA's STE)."""

    @staticmethod
    def forward(ctx, scores, threshold):
        return (scores.abs() >= threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class ScoredMask(nn.Module):
    """A weight parametrization: weight * topk(scores); the threshold is shared by all layers (global)."""

    def __init__(self, weight: torch.Tensor, shared: dict):
        super().__init__()
        fan_in = weight[0].numel()
        # HYDRA's init: scores proportional to the weights, scaled like Kaiming-uniform bounds
        self.scores = nn.Parameter(math.sqrt(6 / fan_in) * weight.detach() / weight.detach().abs().max())
        self.shared = shared

    def forward(self, w):
        return w * _TopK.apply(self.scores, self.shared["threshold"])


def hydra_prune(model: nn.Module, sparsity: float, modality, x, y, threat, cfg, epochs: int, lr: float,
                seed: int) -> list:
    """Learn the mask under the adversarial loss; returns [(weight, mask)] with the mask folded into the weight."""
    from robustkit.training.objectives import create_objective
    layers = prunable_layers(model)
    shared = {"threshold": torch.tensor(0.0)}
    for _, m in layers:
        m.weight.requires_grad_(False)
        parametrize.register_parametrization(m, "weight", ScoredMask(m.weight, shared))
    for p in model.parameters():
        p.requires_grad_(False)
    scores = [m.parametrizations.weight[0].scores for _, m in layers]
    for s in scores:
        s.requires_grad_(True)

    def update_threshold():
        flat = torch.cat([s.detach().abs().flatten() for s in scores])
        k = max(1, int(round(sparsity * flat.numel())))
        shared["threshold"] = flat.kthvalue(k).values + 1e-12
    objective = create_objective("fast", threat, seed=seed)
    batches = modality.training_batches(x, y, model, cfg, rank=0, world=1, with_raw=False)
    opt = torch.optim.Adam(scores, lr=lr)
    total, step = max(1, epochs * getattr(batches, "num_batches", 1)), 0
    model.train()
    for epoch in range(epochs):
        for xb, yb in batches(epoch):
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            update_threshold()
            objective.before_step(model, xb, yb)
            try:
                loss, _ = objective(model, xb, yb)
                loss.backward()
            finally:
                objective.after_step(model)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
    update_threshold()
    model.eval()
    keep = []
    for (_, m), s in zip(layers, scores):
        mask = (s.detach().abs() >= shared["threshold"]).to(m.weight.dtype)
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        with torch.no_grad():
            m.weight.mul_(mask)
        keep.append((m.weight, mask))
    for p in model.parameters():
        p.requires_grad_(True)
    return keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=str(ROOT.parent / "runs" / "fmnist-fast-house"))
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--sparsity", default="0.95,0.98")
    ap.add_argument("--score-epochs", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--score-lr", type=float, default=0.01)
    ap.add_argument("--eval-n", type=int, default=10000)
    ap.add_argument("--train-limit", type=int, default=None, help="use only N training images (smoke tests)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "hydra.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    source, meta = load_model(args.run)
    cfg = _train_config(meta)
    vision = get_modality("vision")
    ds = vision.load("fashion-mnist", data_dir=args.data_dir, seed=cfg.seed)
    x, y, _, _ = vision.training_split(ds, cfg)
    x, y = x[:args.train_limit], y[:args.train_limit]
    threat = vision.training_threat(cfg.norm, cfg.eps, ds)
    xt, yt = ds.x_test[:args.eval_n], ds.y_test[:args.eval_n]
    rows = []
    dense = evaluate_variant(source.eval(), vision, xt, yt, threat, pgd_steps=20)
    for sp in [float(s) for s in args.sparsity.split(",")]:
        row = {"sparsity": sp}
        for how in ("magnitude", "hydra"):
            model = copy.deepcopy(source)
            t0 = time.perf_counter()
            if how == "magnitude":
                magnitude_prune(model, sp, permanent=True)
                keep = [(m.weight, (m.weight != 0).to(m.weight.dtype)) for _, m in prunable_layers(model)]
                ft_epochs = args.score_epochs + args.epochs  # the same training budget as HYDRA's two phases
            else:
                keep = hydra_prune(model, sp, vision, x, y, threat, cfg, args.score_epochs, args.score_lr, cfg.seed)
                row["hydra_before_finetune"] = evaluate_variant(model.eval(), vision, xt, yt, threat, pgd_steps=20)
                ft_epochs = args.epochs
            finetune(model, vision, x, y, threat, method="fast", epochs=ft_epochs, cfg=cfg, lr=1e-3, seed=cfg.seed,
                     keep_zero=keep)
            seconds = time.perf_counter() - t0
            ev = evaluate_variant(model.eval(), vision, xt, yt, threat, pgd_steps=20)
            row[how] = {"sparsity": weight_sparsity(model), "train_seconds": round(seconds, 1),
                        "clean": ev["clean_accuracy"], "pgd20": ev["pgd"]["robust_accuracy"]}
            print(json.dumps({"sparsity": sp, "how": how, "clean": ev["clean_accuracy"]["value"],
                              "pgd20": ev["pgd"]["robust_accuracy"]["value"], "seconds": round(seconds)}), flush=True)
        rows.append(row)
    doc = {"run": args.run, "eval_n": int(yt.numel()), "score_epochs": args.score_epochs, "epochs": args.epochs,
           "score_lr": args.score_lr, "threads": args.threads, "command": " ".join(sys.argv),
           "dense": {"clean": dense["clean_accuracy"], "pgd20": dense["pgd"]["robust_accuracy"]}, "rows": rows}
    atomic_write_text(Path(args.out), json.dumps(doc, indent=1))
    print("| sparsity | method | clean | PGD-20 | training s |\n|---|---|---|---|---|")
    print(f"| 0 | dense | {100 * dense['clean_accuracy']['value']:.2f}% | "
          f"{100 * dense['pgd']['robust_accuracy']['value']:.2f}% | |")
    for r in rows:
        for how in ("magnitude", "hydra"):
            v = r[how]
            print(f"| {r['sparsity']} | {how} | {100 * v['clean']['value']:.2f}% | {100 * v['pgd20']['value']:.2f}% | "
                  f"{v['train_seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
