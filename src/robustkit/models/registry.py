"""Model registry: names -> builders; ``create_model`` wraps the network with Normalize."""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

from torch import nn

from .._validation import unknown_name_error
from . import vision
from .normalize import Normalize

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, builder: Callable[..., nn.Module] | None = None):
    def decorate(fn):
        _MODELS[name] = fn
        return fn
    return decorate(builder) if builder is not None else decorate


for _name, _fn in {"mlp": vision.mlp, "small-cnn": vision.small_cnn, "madry-cnn": vision.madry_cnn,
                   "wong-cnn": vision.wong_cnn, "lenet": vision.lenet, "preact-resnet18": vision.preact_resnet18,
                   "wide-resnet": vision.wide_resnet}.items():
    register_model(_name, _fn)


def available_models() -> dict[str, str]:
    return {k: (inspect.getdoc(v) or "").split("\n")[0] for k, v in sorted(_MODELS.items())}


def model_kwargs(name: str) -> list[str]:
    if name not in _MODELS:
        raise unknown_name_error("model", name, _MODELS)
    return [p.name for p in inspect.signature(_MODELS[name]).parameters.values() if p.kind == p.KEYWORD_ONLY]


def create_model(name: str, *, input_shape: Sequence[int], num_classes: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, **kwargs) -> nn.Sequential:
    """Build ``Normalize(mean, std) -> network``; the network adapts to channels, size and classes.

    The returned module carries ``robustkit_spec`` (name and arguments) so a checkpoint can rebuild it.
    A ``package.module:callable`` name builds the user's own network (``callable(**kwargs)``, given
    ``num_classes``/``input_shape`` when it takes them) behind the same Normalize; its checkpoints
    rebuild through the ``foreign`` family (:mod:`robustkit.models.foreign`).
    """
    from .foreign import build_callable, is_callable_ref
    if is_callable_ref(name) and name not in _MODELS:
        c = int(input_shape[0])
        return build_callable(name, kwargs, input_shape=list(input_shape), num_classes=num_classes,
                              mean=list(mean) if mean is not None else [0.0] * c,
                              std=list(std) if std is not None else [1.0] * c)
    if name not in _MODELS:
        raise unknown_name_error("model", name, _MODELS)
    if len(input_shape) != 3:
        raise ValueError(f"The 'input_shape' parameter of create_model must be (channels, height, width). "
                         f"Got {tuple(input_shape)!r} instead.")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"The 'num_classes' parameter of create_model must be an integer >= 2. "
                         f"Got {num_classes!r} instead.")
    allowed = model_kwargs(name)
    unknown = set(kwargs) - set(allowed)
    if unknown:
        raise ValueError(f"Unknown argument(s) {sorted(unknown)} for model {name!r}. Accepted: {allowed or 'none'}.")
    c, h, w = (int(v) for v in input_shape)
    mean = list(mean) if mean is not None else [0.0] * c
    std = list(std) if std is not None else [1.0] * c
    if len(mean) != c or len(std) != c:
        raise ValueError(f"The 'mean'/'std' parameters of create_model must have one entry per channel ({c}). "
                         f"Got {len(mean)} and {len(std)} instead.")
    net = _MODELS[name](c, num_classes, (h, w), **kwargs)
    model = nn.Sequential(Normalize(mean, std), net)
    model.robustkit_spec = {"name": name, "kwargs": dict(kwargs), "input_shape": [c, h, w],
                            "num_classes": num_classes, "mean": mean, "std": std}
    return model


def model_for_dataset(name: str, dataset, *, normalize: bool = True, **kwargs) -> nn.Sequential:
    """Build a registered model sized for a :class:`~robustkit.data.Dataset`.

    ``normalize=False`` feeds the raw [0, 1] input to the network (mean 0, std 1), as the reference
    code of some recipes does: the function class is the same, but with Adam the first layer's
    effective learning rate differs by 1/std, which decides whether e.g. Fast-AT on MNIST at eps=0.3
    learns robustness or overfits catastrophically.
    """
    if not isinstance(normalize, bool):
        raise TypeError(f"The 'normalize' parameter of model_for_dataset must be true or false. "
                        f"Got {normalize!r} instead.")
    mean, std = (dataset.mean, dataset.std) if normalize else (None, None)
    return create_model(name, input_shape=dataset.input_shape, num_classes=dataset.num_classes,
                        mean=mean, std=std, **kwargs)
