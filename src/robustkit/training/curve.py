"""The training-curve picture: loss, clean and robust accuracy per epoch."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from ..checkpoint import atomic_write_bytes  # noqa: E402


def plot_curve(history: list[dict], path: Path) -> None:
    import io
    epochs = [r["epoch"] + 1 for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(epochs, [r.get("train_loss") for r in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key, label in (("val_clean_acc", "clean (val)"), ("val_robust_acc", "PGD robust (val)"),
                       ("val_fgsm_acc", "FGSM (val)"), ("train_adv_acc", "adversarial (train)")):
        vals = [r.get(key) for r in history]
        if any(v is not None for v in vals):
            ax_acc.plot(epochs, vals, marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    ax_acc.legend(loc="lower right", fontsize=8)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
