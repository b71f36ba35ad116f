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


def eps_curve(sweep: dict) -> bytes:
    eps = sweep["eps"]
    acc = [r["value"] for r in sweep["robust_accuracy"]]
    lo = [a - r["ci95"][0] for a, r in zip(acc, sweep["robust_accuracy"])]
    hi = [r["ci95"][1] - a for a, r in zip(acc, sweep["robust_accuracy"])]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.errorbar(eps, acc, yerr=[lo, hi], marker="o", capsize=3)
    ax.set(xlabel=f"eps ({sweep['norm']})", ylabel="robust accuracy", ylim=(-0.02, 1.02),
           title=f"Robust accuracy vs eps (preset {sweep['preset']}, 95% CI)")
    ax.grid(alpha=0.3)
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
    if doc.get("sweep") and len(doc["sweep"]["eps"]) > 0:
        out["eps_curve"] = eps_curve(doc["sweep"])
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
