"""Resumable audits: the cascade's finished chunks on disk, so a killed audit goes on where it stopped.

An audit of 10,000 images runs for hours on a CPU. With a state folder, every chunk an attack
finishes is written atomically (safetensors: the chunk's sample indices, which of them broke, the
adversarial inputs; JSON: the per-example details). Re-running the same audit reads those chunks
instead of attacking again: each chunk's attack is seeded on its own, so the resumed audit gives the
same per-sample results as an uninterrupted one. A manifest records what the state belongs to (model
weights, data, threat, ensemble, seeds, batch size); a different audit refuses the folder and says
what changed, rather than mixing two audits' results.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, atomic_write_text, read_tensors, write_tensors

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def weights_fingerprint(model) -> str:
    """sha256 of the model's parameters and buffers (what decides its answers)."""
    h = hashlib.sha256()
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    for k in sorted(state):
        t = state[k]
        if isinstance(t, torch.Tensor):
            t = t.detach().contiguous().cpu()
            h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class AuditState:
    """The chunk store of one audit. ``fingerprint`` is a dict of what must match to resume."""

    def __init__(self, folder: str | Path, fingerprint: dict):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.resumed_chunks = 0
        manifest = self.folder / MANIFEST
        if manifest.is_file():
            try:
                saved = json.loads(manifest.read_text())
            except (OSError, ValueError):
                saved = None
            if saved is None:
                raise ValueError(f"The audit state in {self.folder} has an unreadable {MANIFEST}; remove the folder "
                                 "(or pass --fresh) to start the audit over.")
            changed = [k for k in sorted(set(saved) | set(fingerprint)) if saved.get(k) != fingerprint.get(k)]
            if changed:
                detail = "; ".join(f"{k}: saved {_short(saved.get(k))}, now {_short(fingerprint.get(k))}"
                                   for k in changed)
                raise ValueError(f"Cannot resume the audit in {self.folder}: it was started with a different "
                                 f"{', '.join(changed)} ({detail}). Re-run the original audit to finish it, or start "
                                 "over with --fresh (this deletes its saved chunks).")
            log.info("resuming the audit from %s", self.folder)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(manifest, json.dumps(fingerprint, indent=1, sort_keys=True))

    def _path(self, key: str) -> Path:
        return self.folder / f"chunk-{key}.safetensors"

    def load(self, key: str, b: torch.Tensor, modality):
        """The saved chunk ``key`` if it holds exactly the samples ``b``, else None."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            tensors, meta = read_tensors(path)
        except CheckpointError as err:  # a damaged chunk is attacked again, not trusted
            log.warning("ignoring a damaged audit chunk %s: %s", path, err)
            return None
        if not torch.equal(tensors["b"], b.cpu()):
            return None
        xa = modality.chunk_inputs_from_file(tensors, meta)
        self.resumed_chunks += 1
        return xa, tensors["ok"].bool(), meta.get("details", [])

    def save(self, key: str, b: torch.Tensor, xa, ok: torch.Tensor, details: list, modality) -> None:
        tensors, doc = modality.chunk_inputs_to_file(xa)
        details = json.loads(json.dumps(details, default=str))  # JSON-safe whatever an attack reports
        write_tensors(self._path(key), {"b": b.cpu(), "ok": ok.cpu().to(torch.uint8), **tensors},
                      {"kind": "audit-chunk", **doc, "details": details})

    def finish(self) -> None:
        """The audit is complete: its state is no longer needed (a re-run starts afresh)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _short(v) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= 60 else s[:57] + "..."
