"""Checkpoints that are safe to open: weights in safetensors, metadata as JSON inside its header.

One file per checkpoint (``*.safetensors``). The header's ``robustkit`` entry is a JSON document
saying how to rebuild the model (registry name and arguments), what data it was trained on, and
with which threat model and method. Loading never unpickles. Writes go to a temporary file in the
same folder, are fsynced and renamed into place, so a killed process never leaves half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import nn

FORMAT = "robustkit-checkpoint"
FORMAT_VERSION = 1
META_KEY = "robustkit"


class CheckpointError(ValueError):
    """The file is missing, corrupt, or not a robustkit checkpoint."""


TMP_SUFFIX = ".tmp"


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once (a CLI process is single-threaded here).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        # mkstemp creates 0600 files; a report or checkpoint should get the permissions any other file
        # the user writes gets (0666 minus the umask), so that a team can read a shared run folder.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def ensure_writable(folder: str | os.PathLike, *, need_bytes: int = 0) -> Path:
    """Check, before hours of work, that ``folder`` can take the files the work will write.

    Creates the folder, writes and removes a probe file, and compares the free space with
    ``need_bytes``. Raises OSError with a message naming the folder.
    """
    import errno
    import shutil
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=TMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise OSError(err.errno, f"The output folder {folder} is not writable ({err.strerror}); checked before the "
                                 "work started", str(folder)) from None
    if need_bytes and free < need_bytes:
        raise OSError(errno.ENOSPC, f"The output folder {folder} has {free / 2**20:.0f} MiB free but this command "
                                    f"writes about {need_bytes / 2**20:.0f} MiB; checked before the work started",
                      str(folder))
    return folder


def clean_stale_tmp(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files a killed writer left in ``folder`` (``.<name>.<random>.tmp``).

    Call it only while holding the folder (e.g. the run lock): a live writer's file would go too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.glob(f".*{TMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of names, dtypes, shapes and bytes: recorded at write time, checked at read time, so a
    checkpoint damaged on disk (a flipped byte inside a tensor) is refused instead of silently used."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write tensors plus a JSON metadata document (the low-level format)."""
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    doc = {"format": FORMAT, "version": FORMAT_VERSION, **meta, "tensors_sha256": tensors_sha256(clean)}
    atomic_write_bytes(path, st_save(clean, metadata={META_KEY: json.dumps(doc)}))


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist or is not a file.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors checkpoint ({err}). "
                              "robustkit checkpoints are .safetensors files written by robustkit.") from None
    if META_KEY not in header:
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not a robustkit checkpoint (no "
                              f"'{META_KEY}' metadata). Wrap foreign weights with robustkit.checkpoint.save_model.")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{str(path)!r} has corrupt robustkit metadata ({err}).") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} has metadata of format {meta.get('format')!r}; expected {FORMAT!r}.")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{str(path)!r} was written by a newer robustkit (format version {meta['version']}); "
                              f"this one reads up to {FORMAT_VERSION}.")
    want = meta.get("tensors_sha256")
    if want is not None and tensors_sha256(tensors) != want:
        raise CheckpointError(f"{str(path)!r} is corrupted: its tensors do not match the sha256 recorded when it "
                              "was written (the file was damaged or edited after saving). Use another checkpoint "
                              "(e.g. last.safetensors of the run) or retrain.")
    return tensors, meta


def save_model(path: str | os.PathLike, model: nn.Module, *, data: dict | None = None, threat: dict | None = None,
               method: dict | None = None, extra: dict | None = None, model_spec: dict | None = None) -> Path:
    """Save a model built by :func:`robustkit.models.create_model` (or with an explicit ``model_spec``)."""
    spec = model_spec or getattr(_unwrap(model), "robustkit_spec", None)
    if spec is None:
        raise ValueError("The 'model' parameter of save_model must be built by robustkit.models.create_model "
                         "(it carries a rebuild spec), or pass model_spec={'name': ..., 'kwargs': ..., ...}.")
    state = {k: v for k, v in _unwrap(model).state_dict().items()}
    write_tensors(path, state, {"kind": "model", "model": spec, "data": data, "threat": threat, "method": method,
                                "extra": extra or {}})
    return Path(path)


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder (its ``best`` checkpoint, else ``last``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"Run folder {str(path)!r} holds no best.safetensors or last.safetensors.")
    return path


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model from the registry and load its weights. Returns (model in eval mode, metadata)."""
    from .models import create_model  # models is a leaf; imported lazily to keep this module light

    file = resolve(path)
    tensors, meta = read_tensors(file)
    if meta.get("kind") != "model" or "model" not in meta:
        raise CheckpointError(f"{str(file)!r} is a robustkit {meta.get('kind')!r} file, not a model checkpoint.")
    spec = meta["model"]
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{str(file)!r} holds NaN or Inf weights in {', '.join(bad[:3])}"
                              f"{' and more' if len(bad) > 3 else ''}: the training run diverged (try a smaller lr "
                              "or gradient clipping) or the file was damaged. Use an earlier checkpoint.")
    model = build_from_spec(spec) if spec.get("family") else create_model(
        spec["name"], input_shape=spec["input_shape"], num_classes=spec["num_classes"], mean=spec.get("mean"),
        std=spec.get("std"), **spec.get("kwargs", {}))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{str(file)!r}: weights do not fit the model {spec.get('name')!r} they claim ({err}).") \
            from None
    meta["path"] = str(file)
    meta["sha256"] = sha256_file(file)
    return model.to(map_location).eval(), meta


def build_from_spec(spec: dict) -> nn.Module:
    """Hook for non-vision families (text models register a builder under their family name)."""
    family = spec["family"]
    builder = _FAMILY_BUILDERS.get(family)
    if builder is None and family in _LAZY_FAMILIES:  # registered by importing its module
        import importlib
        importlib.import_module(_LAZY_FAMILIES[family])
        builder = _FAMILY_BUILDERS.get(family)
    if builder is None:
        raise CheckpointError(f"Checkpoint model family {family!r} is not available in this installation "
                              f"(known: {sorted(_FAMILY_BUILDERS) or 'none'}).")
    return builder(spec)


_FAMILY_BUILDERS: dict[str, Any] = {}
#: Families whose builder registers itself when its module is imported (hardened: pruned/int8 models).
_LAZY_FAMILIES = {"hardened": "robustkit.hardening.family"}


def register_family(name: str, builder) -> None:
    _FAMILY_BUILDERS[name] = builder


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module) and not hasattr(model, "robustkit_spec"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
