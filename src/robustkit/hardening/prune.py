"""Pruning with PyTorch's own tooling: global magnitude (``torch.nn.utils.prune``) and structured
channel/filter pruning (``torch-pruning``'s dependency graph), both made permanent in the weights.

Example::

    info = magnitude_prune(model, 0.5)            # 50% of all conv/linear weights set to zero, for good
    info = structured_prune(model, 0.5, example)  # half the conv channels and hidden units removed
"""
from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .._validation import check_number

log = logging.getLogger(__name__)
PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def check_sparsity(sparsity, name: str = "prune", owner: str = "harden") -> float:
    """A target sparsity is a share of weights in [0, 1): 1 would remove every weight."""
    value = check_number(sparsity, name, owner=owner)
    if not 0 <= value < 1:
        raise ValueError(f"The '{name}' parameter of {owner} must be a number in [0, 1) (the share of weights "
                         f"removed). Got {sparsity!r} instead.")
    return value


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs whose ``weight`` pruning acts on: convolutions and linear layers.

    Embedding tables are left alone (their rows are words, not redundant connections)."""
    out = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)
           and isinstance(getattr(m, "weight", None), torch.Tensor)]
    if not out:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(f"The model has no prunable layers (Conv1d/2d/3d or Linear weights); it is made of "
                         f"{', '.join(kinds)}. Pruning needs at least one such layer.")
    return out


def magnitude_prune(model: nn.Module, sparsity: float, *, permanent: bool = True) -> dict:
    """Global unstructured L1-magnitude pruning of every conv/linear weight to ``sparsity``.

    With ``permanent=False`` the masks stay as ``torch.nn.utils.prune`` reparametrizations (for
    fine-tuning that keeps pruned weights at zero); call :func:`make_permanent` afterwards.
    """
    sparsity = check_sparsity(sparsity, "sparsity", "magnitude_prune")
    layers = prunable_layers(model)
    if sparsity > 0:
        torch_prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=torch_prune.L1Unstructured,
                                        amount=sparsity)
        if permanent:
            make_permanent(model)
    return {"kind": "global-magnitude", "target_sparsity": sparsity, "layers": [n for n, _ in layers],
            "tool": "torch.nn.utils.prune.global_unstructured(L1Unstructured)"}


def make_permanent(model: nn.Module) -> None:
    """Fold every pruning mask into its weight (``prune.remove``): zeros become ordinary weights."""
    for m in model.modules():
        for name in [h._tensor_name for h in m._forward_pre_hooks.values()
                     if isinstance(h, torch_prune.BasePruningMethod)]:
            torch_prune.remove(m, name)


def weight_sparsity(model: nn.Module) -> dict:
    """Share of zero weights over the prunable layers, and over all parameters."""
    layers = prunable_layers(model)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    total = sum(m.weight.numel() for _, m in layers)
    return {"prunable_weights": total, "zero_weights": zeros, "sparsity": zeros / max(1, total)}


def _find_output_layer(model: nn.Module) -> nn.Module:
    layers = prunable_layers(model)
    return layers[-1][1]


def structured_prune(model: nn.Module, ratio: float, example_inputs: torch.Tensor) -> dict:
    """Remove ``ratio`` of the channels/filters of every conv layer and of every hidden linear layer
    (L1 norm of each filter), really shrinking the layers. The last layer's outputs (the classes)
    and the input channels are kept. Uses torch-pruning's DependencyGraph, so coupled layers (a
    conv's filters and the next layer's inputs, flatten -> linear) shrink together.

    Returns {"shapes": {state key: new shape}} for every tensor whose shape changed (what a
    checkpoint needs to rebuild the pruned layers), plus channel counts before and after.
    """
    ratio = check_sparsity(ratio, "prune", "structured_prune")
    try:
        import torch_pruning as tp
    except ModuleNotFoundError:
        raise ModuleNotFoundError("Structured pruning needs the torch-pruning package "
                                  "(pip install 'robustkit[harden]').") from None
    if not isinstance(example_inputs, torch.Tensor):
        raise ValueError("Structured pruning supports image models (conv networks) only; this model takes "
                         f"{type(example_inputs).__name__} inputs. Use unstructured --prune without --structured.")
    before = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    channels_before = _channels(model)
    if not channels_before["conv_channels"]:
        raise ValueError("Structured pruning removes conv channels, but the model has no Conv2d layer.")
    pruner = tp.pruner.MetaPruner(model, example_inputs, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=[_find_output_layer(model)],
                                  global_pruning=False)
    pruner.step()
    after = model.state_dict()
    shapes = {k: list(v.shape) for k, v in after.items() if tuple(v.shape) != before.get(k)}
    channels_after = _channels(model)
    removed = 1 - channels_after["conv_channels"] / channels_before["conv_channels"]
    return {"kind": "structured-channels", "ratio": ratio, "tool": "torch_pruning.MetaPruner(MagnitudeImportance(p=1))",
            "shapes": shapes, "channels_before": channels_before, "channels_after": channels_after,
            "conv_channels_removed_share": removed}


def _channels(model: nn.Module) -> dict:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return {"conv_channels": sum(m.out_channels for m in convs), "per_conv": [m.out_channels for m in convs],
            "per_linear": [m.out_features for m in linears]}


def resize_to(model: nn.Module, shapes: dict) -> nn.Module:
    """Give the tensors named in ``shapes`` their (pruned) shapes, and the layers their new widths, so
    a structurally pruned checkpoint's weights load into the rebuilt architecture."""
    modules = dict(model.named_modules())
    for key, shape in shapes.items():
        mod_name, _, attr = key.rpartition(".")
        mod = modules.get(mod_name)
        if mod is None or not hasattr(mod, attr):
            raise ValueError(f"The pruned shape of {key!r} does not match any tensor of the rebuilt model.")
        old = getattr(mod, attr)
        new = torch.zeros(shape, dtype=old.dtype)  # overwritten by the checkpoint; finite for calibration
        if isinstance(old, nn.Parameter):
            setattr(mod, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            mod._buffers[attr] = new
        if attr == "weight":
            if isinstance(mod, nn.Linear):
                mod.out_features, mod.in_features = int(shape[0]), int(shape[1])
            elif isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                mod.out_channels, mod.in_channels = int(shape[0]), int(shape[1]) * mod.groups
            elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
                if hasattr(mod, "num_features"):
                    mod.num_features = int(shape[0])
    return model
