"""What hardening changes, measured: parameters, non-zero share, file size and CPU latency.

Latency is measured side by side: the models run interleaved (A, B, A, B, ...) under
``torch.inference_mode()`` with an explicit thread count, and the medians are compared, so a
neighbour's load on a shared machine hits both alike.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from .._validation import check_number


def parameter_stats(model: nn.Module) -> dict:
    """Parameter count and share of non-zero values, over float weights and int8 weights alike."""
    total = nonzero = 0
    if hasattr(model, "dequantized_state"):  # a quantized model: its int8 weights (dequantized) and float parameters
        state = model.dequantized_state()
        for name, _ in model.dequantized_model().named_parameters():
            v = state[name]
            total += v.numel()
            nonzero += int((v != 0).sum())
    else:
        for p in model.parameters():
            total += p.numel()
            nonzero += int((p != 0).sum())
    return {"parameters": total, "nonzero_parameters": nonzero, "nonzero_share": nonzero / max(1, total)}


def file_size(path) -> int | None:
    return os.path.getsize(path) if path and os.path.isfile(path) else None


def latency(models: dict[str, Callable[[Any], Any]], inputs: dict[int, Any], *, repeats: int = 20,
            warmup: int = 3, threads: int = 1) -> dict:
    """Median seconds per batch for every model and batch size, interleaved repetitions.

    ``inputs`` maps batch size -> the batch (a tensor, or a tokenized dict for text models).
    Returns {"threads", "repeats", "batch": {bs: {name: {"median_s", "p10_s", "p90_s"}, "ratio": first/other}}}.
    """
    repeats = check_number(repeats, "repeats", owner="latency", low=1, integer=True)
    threads = check_number(threads, "threads", owner="latency", low=1, integer=True)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    out: dict = {"threads": threads, "repeats": repeats, "batch": {}}
    names = list(models)
    try:
        with torch.inference_mode():
            for bs, x in inputs.items():
                for _ in range(warmup):
                    for n in names:
                        models[n](x)
                times: dict[str, list[float]] = {n: [] for n in names}
                for r in range(repeats):
                    order = names if r % 2 == 0 else names[::-1]  # alternate who goes first
                    for n in order:
                        t0 = time.perf_counter()
                        models[n](x)
                        times[n].append(time.perf_counter() - t0)
                row = {}
                for n in names:
                    ts = sorted(times[n])
                    row[n] = {"median_s": statistics.median(ts), "p10_s": ts[int(0.1 * (len(ts) - 1))],
                              "p90_s": ts[int(0.9 * (len(ts) - 1))]}
                if len(names) == 2:
                    row["speedup"] = row[names[0]]["median_s"] / max(1e-12, row[names[1]]["median_s"])
                out["batch"][int(bs)] = row
    finally:
        torch.set_num_threads(old)
    return out
