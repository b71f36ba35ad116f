"""Bring your own model: every kind of model robustkit accepts, recognised in one place.

:func:`load_any` takes what a user types as the model (the commands' first argument) and returns
``(model in eval mode, meta)``, ``meta`` shaped like :func:`robustkit.checkpoint.load_model`'s
(``model`` spec with a ``family``, ``data``/``threat``/``method`` None when unknown, ``path`` and the
file's ``sha256`` where there is a file). The kinds, in the order they are recognised:

- ``timm:NAME`` / ``torchvision:NAME``: an architecture from the optional ``timm`` / ``torchvision``
  package (imported only here, only then); ``--weights FILE.safetensors`` loads its weights.
- ``hf:ID_OR_FOLDER``: a Hugging Face sequence-classification model (text), from a folder or, with
  ``allow_download``, the hub (otherwise ``local_files_only``: the local cache only).
- an existing folder: a robustkit run (``best``/``last.safetensors``) or a Hugging Face model folder
  (``config.json``);
- an existing file: a robustkit ``.safetensors`` checkpoint, an ``.onnx`` file (a black-box model:
  :mod:`robustkit.models.onnx`), or a TorchScript archive (``torch.jit.save``). A ``torch.save``
  pickle is refused: loading one runs arbitrary code.
- ``package.module:callable``: imports the user's module and calls ``callable(**model_args)``, which
  must return an ``nn.Module``. Importing a module runs its code: that is code the user chose to run.
  The current directory is put on ``sys.path`` for the import (as ``uvicorn``/``python -m`` do).
- ``org/name`` (not an existing path): a Hugging Face hub id, as ``hf:org/name``.

Saving a foreign model (:func:`robustkit.checkpoint.save_model`) stores how to rebuild it (the
import path and arguments, the TorchScript/ONNX file with its sha256, the timm/torchvision name) in
a ``{"family": "foreign", "loader": ...}`` spec plus the weights in safetensors, never a pickle;
:func:`robustkit.checkpoint.load_model` rebuilds it through the ``foreign`` family registered here.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import CheckpointError, register_family, sha256_file
from .normalize import Normalize

KINDS = ("checkpoint", "torchscript", "onnx", "callable", "timm", "torchvision", "huggingface")
_CALLABLE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_EXTRAS = {"timm": "timm", "torchvision": "vision", "onnxruntime": "export", "transformers": "text"}

ACCEPTED = ("a robustkit run folder or .safetensors checkpoint, a TorchScript file (torch.jit.save), an .onnx "
            "file, timm:NAME, torchvision:NAME, package.module:callable (returning an nn.Module), or for texts a "
            "Hugging Face model folder or hf:ORG/NAME")


def describe_kinds() -> str:
    return ACCEPTED


def import_optional(name: str, what: str):
    """Import an optional package; a missing one is a clear error naming the extra that brings it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        extra = _EXTRAS.get(name, name)
        raise ModuleNotFoundError(f"{what} needs the optional package {name!r}: pip install 'robustkit[{extra}]' "
                                  f"(or pip install {name}).") from None


# -- the one entry point ----------------------------------------------------------------------------
def detect_kind(ref: str | os.PathLike) -> str:
    """Which kind of model ``ref`` names (one of :data:`KINDS`); an error lists the accepted kinds."""
    if not isinstance(ref, (str, os.PathLike)) or not str(ref).strip():
        raise TypeError(f"The model must be given as a path or a name: {ACCEPTED}. Got {ref!r} instead.")
    text = str(ref)
    for prefix, kind in (("timm:", "timm"), ("torchvision:", "torchvision"), ("hf:", "huggingface")):
        if text.startswith(prefix):
            if not text[len(prefix):].strip():
                raise ValueError(f"The model {text!r} names no {kind} model after {prefix!r}.")
            return kind
    path = Path(text)
    if path.is_dir():
        if any((path / f"{w}.safetensors").is_file() for w in ("best", "last")):
            return "checkpoint"
        if (path / "config.json").is_file():
            return "huggingface"
        raise ValueError(f"The model folder {text!r} holds neither a robustkit run (best.safetensors or "
                         "last.safetensors) nor a Hugging Face model (config.json). Accepted: " + ACCEPTED + ".")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            if not _has_robustkit_header(path):
                raise ValueError(f"The model file {text!r} holds safetensors weights without a robustkit header: "
                                 "weights alone do not say which network they belong to. Give the architecture as "
                                 "the model and this file as --weights, e.g. timm:resnet18 --weights FILE, or "
                                 "package.module:callable --weights FILE.")
            return "checkpoint"
        if suffix == ".onnx":
            return "onnx"
        if _is_torchscript(path):
            return "torchscript"
        if zipfile.is_zipfile(path) or suffix in (".pt", ".pth", ".pkl", ".bin", ".ckpt"):
            raise ValueError(f"The model file {text!r} is not a TorchScript archive: it looks like a torch.save "
                             "pickle, and robustkit never unpickles model files (loading one can run arbitrary "
                             "code). Export it with torch.jit.script(model).save(path) (or torch.jit.trace), or "
                             "save model.state_dict() with safetensors.torch.save_file and pass it as --weights "
                             "next to the architecture (package.module:callable, timm:NAME, torchvision:NAME).")
        raise ValueError(f"The model file {text!r} is of no kind robustkit reads. Accepted: {ACCEPTED}.")
    if _CALLABLE.match(text):
        return "callable"
    if _HUB_ID.match(text) and not text.startswith((".", "/")) and not Path(text.split("/")[0]).is_dir():
        return "huggingface"  # "org/name"; a path under an existing folder (runs/typo) is a missing file instead
    raise FileNotFoundError(f"The model {text!r} does not exist. Give {ACCEPTED}.")


def load_any(ref: str | os.PathLike, *, which: str = "best", weights: str | os.PathLike | None = None,
             allow_download: bool = False, model_args: dict | None = None,
             map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load any supported model (see the module docstring) -> (model in eval mode, meta)."""
    kind = detect_kind(ref)
    kwargs = dict(model_args or {})
    text = str(ref)
    if kind == "checkpoint":
        _refuse_extras(kind, text, weights=weights, model_args=kwargs)
        from ..checkpoint import load_model, resolve
        path = Path(text)
        if path.is_dir() and which != "best":
            if which != "last":
                raise ValueError(f"The 'which' option must be one of ['best', 'last']. Got {which!r} instead.")
            if (path / "last.safetensors").is_file():
                path = path / "last.safetensors"
        elif path.is_dir() and (path / "best.safetensors").is_file():
            path = path / "best.safetensors"
        model, meta = load_model(resolve(path), map_location=map_location)
        meta["source"] = {"kind": kind, "ref": text}
        return model, meta
    if kind == "torchscript":
        _refuse_extras(kind, text, weights=weights, model_args=kwargs)
        model = load_torchscript(text)
        file = Path(text)
    elif kind == "onnx":
        _refuse_extras(kind, text, weights=weights, model_args=kwargs)
        from .onnx import OnnxModel
        model = OnnxModel(text)
        file = Path(text)
    elif kind == "callable":
        model = build_callable(text, kwargs, weights=weights)
        file = None
    elif kind in ("timm", "torchvision"):
        model = build_zoo(kind, text.split(":", 1)[1], kwargs, weights=weights, allow_download=allow_download)
        file = None
    else:  # huggingface
        _refuse_extras(kind, text, weights=weights, model_args={k: v for k, v in kwargs.items() if k != "max_length"})
        from .hf import load_hf_classifier
        source = text[3:] if text.startswith("hf:") else text
        model = load_hf_classifier(source, allow_download=allow_download, max_length=kwargs.get("max_length"))
        file = Path(source) if Path(source).exists() else None
    spec = dict(getattr(model, "robustkit_spec", None) or {})
    if kind == "huggingface":  # the full rebuild spec (config + tokenizer) travels with the model, not the meta
        spec = {"family": "text", "name": spec.get("name"), "loader": "huggingface",
                "num_classes": spec.get("num_classes"), "max_length": spec.get("max_length")}
    sha = sha256_file(file) if file is not None and file.is_file() else None
    meta = {"kind": "model", "model": spec, "data": None, "threat": None, "method": None, "extra": {},
            "path": str(file) if file is not None else text, "sha256": sha, "source": {"kind": kind, "ref": text}}
    if weights is not None:
        meta["source"]["weights"] = {"path": str(weights), "sha256": sha256_file(weights)}
    return model.to(map_location).eval(), meta


def _refuse_extras(kind: str, ref: str, *, weights, model_args: dict) -> None:
    if weights is not None:
        raise ValueError(f"The '--weights' option applies to package.module:callable, timm:NAME and torchvision:NAME "
                         f"models; the {kind} model {ref!r} carries its own weights. Got --weights {str(weights)!r}.")
    if model_args:
        raise ValueError(f"The '--model-arg' option applies to package.module:callable, timm:NAME and "
                         f"torchvision:NAME models, not to the {kind} model {ref!r}. Got {sorted(model_args)}.")


def _has_robustkit_header(path: Path) -> bool:
    from safetensors import SafetensorError, safe_open
    from ..checkpoint import META_KEY
    try:
        with safe_open(str(path), framework="pt") as fh:
            return META_KEY in (fh.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return True  # unreadable: let load_model say precisely what is wrong with it


# -- TorchScript --------------------------------------------------------------------------------------
def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip holding ``<name>/code/`` (the compiled TorchScript) and ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def load_torchscript(path: str | os.PathLike, *, expect_sha256: str | None = None) -> nn.Module:
    """``torch.jit.load`` on the CPU. A TorchScript archive is not a general pickle: its tensors and
    constants are read by TorchScript's own restricted unpickler (tensors and TorchScript types only,
    no arbitrary Python classes), and its code is TorchScript, compiled, not Python to import."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript file {str(path)!r} does not exist.")
    if expect_sha256 is not None and sha256_file(path) != expect_sha256:
        raise CheckpointError(f"TorchScript file {str(path)!r} changed since the checkpoint was saved (sha256 "
                              f"differs from {expect_sha256[:12]}...): the saved weights may not fit it. Load the "
                              "file itself, or restore the original.")
    if not _is_torchscript(path):
        raise ValueError(f"{str(path)!r} is not a TorchScript archive (torch.jit.save).")
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise ValueError(f"Cannot load TorchScript file {str(path)!r}: {str(err).splitlines()[0]}") from None
    model.robustkit_spec = {"family": "foreign", "loader": "torchscript", "path": str(path.resolve()),
                            "sha256": sha256_file(path)}
    return model.eval()


# -- package.module:callable ------------------------------------------------------------------------
def _import_callable(ref: str):
    module_name, _, attr = ref.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise ModuleNotFoundError(f"Cannot import module {module_name!r} of the model {ref!r}: no such module "
                                      f"on the Python path (the current directory {cwd!r} included). Run from the "
                                      "folder holding it, or set PYTHONPATH.") from None
        raise ModuleNotFoundError(f"Importing {module_name!r} for the model {ref!r} failed: {err}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"Module {module_name!r} has no attribute {attr!r} (the model {ref!r}).")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"The model {ref!r} must name a callable (a function or class) returning an nn.Module. "
                        f"Got a {type(obj).__name__}.")
    return obj


def build_callable(ref: str, kwargs: dict | None = None, *, weights: str | os.PathLike | None = None,
                   input_shape=None, num_classes: int | None = None, mean=None, std=None) -> nn.Module:
    """``package.module:callable(**kwargs)`` -> an nn.Module carrying a ``foreign`` rebuild spec.

    ``mean``/``std`` (training through the config) put a :class:`Normalize` first, as robustkit's own
    models have. ``input_shape``/``num_classes`` are passed to the callable when it accepts them.
    """
    import inspect
    if not isinstance(ref, str) or not _CALLABLE.match(ref):
        raise ValueError(f"The model reference must look like 'package.module:callable'. Got {ref!r} instead.")
    fn = _import_callable(ref)
    kw = dict(kwargs or {})
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    for key, value in (("num_classes", num_classes), ("input_shape", input_shape)):
        if value is not None and key in params and key not in kw:
            kw[key] = list(value) if key == "input_shape" else value
    try:
        net = fn(**kw)
    except TypeError as err:
        raise TypeError(f"Calling the model {ref!r} with {kw} failed: {err}. Pass its arguments with --model-arg "
                        "key=value (or model_args in a config).") from None
    if not isinstance(net, nn.Module):
        raise TypeError(f"The model {ref!r} must return a torch.nn.Module. Got {type(net).__name__} instead.")
    model = _with_normalize(net, mean, std)
    if weights is not None:
        load_weights(net, weights, ref)
    model.robustkit_spec = {"family": "foreign", "loader": "callable", "ref": ref, "kwargs": kw,
                            "normalize": None if mean is None else {"mean": list(mean), "std": list(std)},
                            "input_shape": None if input_shape is None else list(input_shape),
                            "num_classes": num_classes}
    return model


def _with_normalize(net: nn.Module, mean, std) -> nn.Module:
    if mean is None and std is None:
        return net
    if mean is None or std is None:
        raise ValueError("The 'mean' and 'std' model arguments go together; give both or neither.")
    return nn.Sequential(Normalize(_floats(mean, "mean"), _floats(std, "std")), net)


def _floats(value, name: str) -> list[float]:
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        raise ValueError(f"The '{name}' model argument must be numbers, one per channel (e.g. {name}=0.5,0.5,0.5). "
                         f"Got {value!r} instead.") from None


def load_weights(net: nn.Module, weights: str | os.PathLike, ref: str) -> None:
    """Load a safetensors state dict into ``net`` (strict); a mismatch names the first differing keys."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"The '--weights' file {str(path)!r} does not exist.")
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"The '--weights' option must be a .safetensors file (robustkit never unpickles .pt/.pth "
                         f"files; convert with safetensors.torch.save_file(model.state_dict(), 'w.safetensors')). "
                         f"Got {str(path)!r} instead.")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"The '--weights' file {str(path)!r} is not a readable safetensors file ({err}).") from None
    have = set(net.state_dict())
    missing, unexpected = sorted(have - set(state)), sorted(set(state) - have)
    if missing or unexpected:
        raise ValueError(f"The '--weights' file {str(path)!r} does not fit the model {ref!r}: missing keys "
                         f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                         f"{' ...' if len(unexpected) > 5 else ''}.")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"The '--weights' file {str(path)!r} does not fit the model {ref!r}: "
                         f"{str(err).splitlines()[-1].strip()}") from None


# -- timm / torchvision -------------------------------------------------------------------------------
def build_zoo(kind: str, name: str, kwargs: dict | None = None, *, weights=None, allow_download: bool = False
              ) -> nn.Module:
    """``timm.create_model(name, pretrained=False, **kwargs)`` or ``torchvision.models.get_model(name,
    weights=None, **kwargs)``, with an optional Normalize (``mean``/``std`` arguments) and ``--weights``.

    ``pretrained=true`` downloads the package's weights and therefore needs ``allow_download``.
    """
    kw = dict(kwargs or {})
    mean, std = kw.pop("mean", None), kw.pop("std", None)
    pretrained = kw.pop("pretrained", False)
    if pretrained and not allow_download:
        raise ValueError(f"The model {kind}:{name} with pretrained=true downloads weights; pass --allow-download, "
                         "or give the weights as --weights FILE.safetensors.")
    try:
        if kind == "timm":
            timm = import_optional("timm", f"The model timm:{name}")
            net = timm.create_model(name, pretrained=bool(pretrained), **kw)
        else:
            tv = import_optional("torchvision", f"The model torchvision:{name}")
            net = tv.models.get_model(name, weights="DEFAULT" if pretrained else None, **kw)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:  # unknown names, bad arguments
        msg = err.args[0] if err.args else err
        raise ValueError(f"Cannot build the {kind} model {name!r} with {kw}: {msg}") from None
    if not isinstance(net, nn.Module):
        raise TypeError(f"{kind} returned a {type(net).__name__} for {name!r}, not an nn.Module.")
    if weights is not None:
        load_weights(net, weights, f"{kind}:{name}")
    model = _with_normalize(net, mean, std)
    model.robustkit_spec = {"family": "foreign", "loader": kind, "ref": name, "kwargs": kw,
                            "normalize": None if mean is None else {"mean": _floats(mean, "mean"),
                                                                    "std": _floats(std, "std")}}
    return model


# -- rebuilding from a checkpoint -------------------------------------------------------------------
def _build_from_spec(spec: dict) -> nn.Module:
    """The ``foreign`` checkpoint family: rebuild the architecture; ``load_model`` then loads the weights."""
    loader = spec.get("loader")
    norm = spec.get("normalize") or {}
    if loader == "callable":
        model = build_callable(spec["ref"], spec.get("kwargs") or {}, mean=norm.get("mean"), std=norm.get("std"))
        model.robustkit_spec = dict(spec)
        return model
    if loader in ("timm", "torchvision"):
        kwargs = dict(spec.get("kwargs") or {})
        if norm:
            kwargs.update(mean=norm["mean"], std=norm["std"])
        return build_zoo(loader, spec["ref"], kwargs)
    if loader == "torchscript":
        return load_torchscript(spec["path"], expect_sha256=spec.get("sha256"))
    if loader == "onnx":
        from .onnx import OnnxModel
        return OnnxModel(spec["path"], expect_sha256=spec.get("sha256"))
    raise CheckpointError(f"Checkpoint model spec has an unknown foreign loader {loader!r} (known: callable, timm, "
                          "torchvision, torchscript, onnx).")


def is_callable_ref(name: Any) -> bool:
    """``package.module:callable`` (what ``create_model`` and configs accept as a user's own model)."""
    return isinstance(name, str) and bool(_CALLABLE.match(name))


register_family("foreign", _build_from_spec)
