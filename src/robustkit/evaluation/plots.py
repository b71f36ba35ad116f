"""PNG plots for the audit report, each drawn from the audit JSON alone (matplotlib, Agg backend)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._common import gallery_kind  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _errorbars(rows: list[dict]) -> tuple[list, list]:
    acc = [r["value"] for r in rows]
    return acc, [[a - r["ci95"][0] for a, r in zip(acc, rows)], [r["ci95"][1] - a for a, r in zip(acc, rows)]]


def eps_curve(sweep: dict) -> bytes:
    """Robust accuracy per eps with 95% CIs; the headline evaluation's point (another preset, usually a
    stronger one) is a star, so a reader sees which number came from which ensemble."""
    eps = sweep["eps"]
    acc, err = _errorbars(sweep["robust_accuracy"])
    hi = sweep.get("headline_index")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(eps, acc, color="C0", alpha=0.5)
    rest = [i for i in range(len(eps)) if i != hi]
    ax.errorbar([eps[i] for i in rest], [acc[i] for i in rest], yerr=[[err[0][i] for i in rest],
                                                                        [err[1][i] for i in rest]],
                marker="o", capsize=3, linestyle="none", color="C0", label=f"sweep (preset {sweep['preset']})")
    if hi is not None:
        preset = (sweep.get("presets") or [sweep.get("headline_preset")] * len(eps))[hi]
        ax.errorbar([eps[hi]], [acc[hi]], yerr=[[err[0][hi]], [err[1][hi]]], marker="*", markersize=14,
                    capsize=3, linestyle="none", color="C3", label=f"headline (preset {preset})")
    ax.set(xlabel=f"eps ({sweep['norm']})", ylabel="robust accuracy", ylim=(-0.02, 1.02),
           title="Robust accuracy vs eps (95% CI)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def compare_eps_curves(curves: list[tuple[str, dict]]) -> bytes:
    """Several audits' eps sweeps on one axis (the compare page); the headline points are stars."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for j, (name, sweep) in enumerate(curves):
        acc, err = _errorbars(sweep["robust_accuracy"])
        ax.errorbar(sweep["eps"], acc, yerr=err, marker="o", capsize=3, color=f"C{j % 10}",
                    label=f"{name} (preset {sweep['preset']})")
        hi = sweep.get("headline_index")
        if hi is not None:
            ax.plot([sweep["eps"][hi]], [acc[hi]], marker="*", markersize=14, color=f"C{j % 10}", linestyle="none")
    norms = sorted({s.get("norm", "?") for _, s in curves})
    ax.set(xlabel=f"eps ({', '.join(norms)})", ylabel="robust accuracy", ylim=(-0.02, 1.02),
           title="Robust accuracy vs eps (stars: headline evaluations)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def training_curve(tc: dict) -> bytes:
    """Validation clean and robust accuracy per epoch (from the run's metrics.jsonl)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key, label in (("val_clean_acc", "clean"), ("val_robust_acc", "robust")):
        pts = [(e, v) for e, v in zip(tc["epoch"], tc[key]) if v is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax.set(xlabel="epoch", ylabel="validation accuracy", ylim=(-0.02, 1.02), title="Training curve")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def per_class_accuracy(per_class: list[dict], class_names: list[str]) -> bytes:
    """Clean vs robust accuracy of each class, side by side."""
    idx = np.arange(len(per_class))
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for off, key, label in ((-0.2, "clean", "clean"), (0.2, "robust", "robust")):
        ax.bar(idx + off, [r[key]["value"] or 0 for r in per_class], 0.4, label=label)
    ax.set_xticks(idx, [class_names[r["class"]] for r in per_class], rotation=45, ha="right", fontsize=7)
    ax.set(ylabel="accuracy", ylim=(0, 1.05), title="Per-class accuracy: clean vs robust")
    ax.legend(fontsize=7)
    return _png(fig)


def precision_recall(metrics: dict, class_names: list[str]) -> bytes:
    k = len(class_names)
    idx = np.arange(k)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, key in zip(axes, ("precision", "recall")):
        clean = [r[key] or 0 for r in metrics["precision_recall_clean"]]
        adv = [r[key] or 0 for r in metrics["precision_recall_adversarial"]]
        ax.bar(idx - 0.2, clean, 0.4, label="clean")
        ax.bar(idx + 0.2, adv, 0.4, label="adversarial")
        ax.set_xticks(idx, class_names, rotation=45, ha="right", fontsize=7)
        ax.set(title=key, ylim=(0, 1.05))
    axes[0].legend(fontsize=7)
    return _png(fig)


def confusion(matrix: list[list[int]], class_names: list[str], title: str) -> bytes:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(m, cmap="Blues")
    k = len(class_names)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def confidence_hist(per_sample: dict) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(0, 1, 21)
    ax.hist(per_sample["conf_clean"], bins=bins, alpha=0.6, label="clean")
    ax.hist(per_sample["conf_adv"], bins=bins, alpha=0.6, label="adversarial")
    ax.set(xlabel="max softmax probability", ylabel="samples", title="Confidence: clean vs adversarial")
    ax.legend()
    return _png(fig)


def _img(a: np.ndarray) -> np.ndarray:
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def gallery(items: list[dict], class_names: list[str]) -> bytes:
    n = len(items)
    fig, axes = plt.subplots(3, n, figsize=(1.5 * n, 4.8), squeeze=False)
    for j, it in enumerate(items):
        x, xa = np.asarray(it["x"]), np.asarray(it["x_adv"])
        diff = xa - x
        amp = 0.5 + diff / (2 * max(float(np.abs(diff).max()), 1e-8))
        gray = x.shape[0] == 1
        for i, (img, title) in enumerate(((x, f"{class_names[it['pred_clean']]}"),
                                          (np.clip(xa, 0, 1), f"{class_names[it['pred_adv']]}"),
                                          (amp, "diff (amplified)"))):
            ax = axes[i][j]
            ax.imshow(_img(img), cmap="gray" if gray else None, vmin=0, vmax=1)
            ax.set_title(title, fontsize=7, color="red" if i == 1 and it["pred_adv"] != it["label"] else "black")
            ax.axis("off")
    axes[0][0].text(-0.3, 0.5, "original", transform=axes[0][0].transAxes, rotation=90, va="center", fontsize=7)
    axes[1][0].text(-0.3, 0.5, "adversarial", transform=axes[1][0].transAxes, rotation=90, va="center", fontsize=7)
    return _png(fig)


def certification_curve(cert: dict) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.step(cert["radii"], [r["value"] for r in cert["certified_accuracy"]], where="post", marker="o")
    ax.set(xlabel="L2 radius", ylabel="certified accuracy", ylim=(-0.02, 1.02),
           title=f"Randomized smoothing, sigma={cert['sigma']} (N={cert['n']})")
    ax.grid(alpha=0.3)
    return _png(fig)


def all_plots(doc: dict) -> dict[str, bytes]:
    """name -> PNG bytes for every plot the audit's data supports."""
    names = doc["class_names"]
    ev = doc["evaluation"]
    out = {}
    tc = doc.get("training_curve")
    if tc and tc.get("epoch"):
        out["training_curve"] = training_curve(tc)
    if doc.get("sweep") and len(doc["sweep"]["eps"]) > 0:
        out["eps_curve"] = eps_curve(doc["sweep"])
    out["per_class"] = per_class_accuracy(ev["per_class"], names)
    out["confusion_clean"] = confusion(doc["metrics"]["confusion_clean"], names, "Confusion matrix (clean)")
    out["precision_recall"] = precision_recall(doc["metrics"], names)
    out["confusion_adversarial"] = confusion(doc["metrics"]["confusion_adversarial"], names,
                                             "Confusion matrix under attack")
    if "per_sample" in ev:
        out["confidence"] = confidence_hist(ev["per_sample"])
    if doc.get("gallery") and gallery_kind(doc) == "images":  # sentences are shown as a table instead
        out["gallery"] = gallery(doc["gallery"], names)
    if doc.get("certification"):
        out["certification"] = certification_curve(doc["certification"])
    return out
