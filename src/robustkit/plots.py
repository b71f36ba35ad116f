"""Pictures shared by commands: the adversarial-example grid."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .checkpoint import atomic_write_bytes  # noqa: E402


def _img(t: torch.Tensor):
    t = t.detach().cpu().float()
    return t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).clamp(0, 1).numpy()


def adversarial_grid(path: str | Path, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                     pred_clean: torch.Tensor, pred_adv: torch.Tensor, class_names: Sequence[str],
                     n: int = 8, amplify: float | None = None) -> Path:
    """Rows: original (true / predicted label), adversarial (prediction), amplified difference."""
    n = min(n, x.shape[0])
    delta = (x_adv[:n] - x[:n]).detach().cpu()
    amp = amplify or (0.5 / max(float(delta.abs().max()), 1e-12))
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.2), squeeze=False)
    gray = "gray" if x.shape[1] == 1 else None
    for i in range(n):
        axes[0, i].imshow(_img(x[i]), cmap=gray, vmin=0, vmax=1)
        axes[0, i].set_title(f"true {class_names[int(y[i])]}\npred {class_names[int(pred_clean[i])]}", fontsize=7)
        axes[1, i].imshow(_img(x_adv[i]), cmap=gray, vmin=0, vmax=1)
        color = "red" if int(pred_adv[i]) != int(y[i]) else "green"
        axes[1, i].set_title(f"adv: {class_names[int(pred_adv[i])]}", fontsize=7, color=color)
        axes[2, i].imshow(_img((delta[i] * amp + 0.5).clamp(0, 1)), cmap=gray, vmin=0, vmax=1)
        axes[2, i].set_title(f"diff x{amp:.1f}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
