"""Run an attack over a dataset in batches, with an optional progress bar."""
from __future__ import annotations

import torch
from torch import nn

from .base import Attack, in_mode


def attack_in_batches(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500,
                      progress: bool = False, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor,
                                                                                            torch.Tensor]:
    """Returns (x_adv, clean predictions, adversarial predictions), all on the CPU."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"The 'batch_size' parameter of attack_in_batches must be an integer >= 1. "
                         f"Got {batch_size!r} instead.")
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=x.shape[0], desc=attack.name, unit="img", leave=False)
    advs, pc, pa = [], [], []
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        xa = attack(model, xb, yb)
        with in_mode(model, "eval"), torch.no_grad():  # each module gets its own mode back
            pc.append(model(xb).argmax(1).cpu())
            pa.append(model(xa).argmax(1).cpu())
        advs.append(xa.cpu())
        if bar is not None:
            bar.update(xb.shape[0])
    if bar is not None:
        bar.close()
    return torch.cat(advs), torch.cat(pc), torch.cat(pa)
