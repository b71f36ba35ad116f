"""The Modality protocol: everything that differs between images and texts, behind one interface.

Training, attacks, the audit, the report and the CLI ask the adapter, never ``if text:``. An
adapter loads a dataset and a model, says what a perturbation is (the threat model used to train
and the one used to audit), batches inputs, runs the model on them, and renders an example.

Inputs ``x`` are whatever the modality uses (an (N, C, H, W) tensor for images, a list of strings
for texts); labels ``y`` are always an (N,) LongTensor. Sample selection goes through ``take`` /
``put`` with an index tensor, so generic code never indexes inputs itself.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, ClassVar

import torch
from torch import nn

Batches = Callable[[int], Any]


class Modality:
    """Base class of the adapters. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str] = "modality"
    #: Inputs live in a continuous space with a geometry (noise, smoothing, Lp balls, gradients).
    continuous: ClassVar[bool] = True
    #: How the report shows example pairs: "images" (a PNG grid) or "sentences" (a table).
    gallery_kind: ClassVar[str] = "images"
    #: Named attack ensembles of the audit: preset -> [(attack name, params), ...].
    presets: ClassVar[dict[str, list[tuple[str, dict]]]] = {}
    #: The attack the trainer validates robustness with each epoch (None: clean accuracy only).
    validation_attack: ClassVar[str | None] = None

    # -- data ---------------------------------------------------------------------------------------
    def load(self, name: str, *, data_dir=None, limit: int | None = None, seed: int = 0, **options):
        from ..data import load_dataset
        return load_dataset(name, data_dir=data_dir, limit=limit, seed=seed, **options)

    def data_options(self, model_args: dict) -> tuple[dict, dict]:
        """Split a config's ``model_args`` into (model keyword arguments, data loader options)."""
        return dict(model_args), {}

    def eval_split(self, ds, limit: int | None = None) -> tuple[Any, torch.Tensor]:
        raise NotImplementedError

    def training_split(self, ds, cfg) -> tuple[Any, torch.Tensor, Any, torch.Tensor]:
        """(train inputs, train labels, validation inputs, validation labels)."""
        raise NotImplementedError

    # -- model --------------------------------------------------------------------------------------
    def build_model(self, cfg, ds, model_kwargs: dict) -> nn.Module:
        raise NotImplementedError

    def check_model_fits(self, model_spec: dict, data_spec: dict, source: str) -> None:
        classes = model_spec.get("num_classes")
        if classes is not None and data_spec.get("num_classes") is not None and classes != data_spec["num_classes"]:
            raise ValueError(f"{source} has {classes} output classes but dataset {data_spec.get('name')!r} has "
                             f"{data_spec['num_classes']}.")

    # -- perturbations ------------------------------------------------------------------------------
    def training_threat(self, norm: str, eps: float, ds):
        """The threat model adversarial training perturbs in (None when eps is 0)."""
        raise NotImplementedError

    def audit_threat(self, eps: float | None, norm: str | None, saved: dict | None, ds):
        """The threat model attacks and the audit use, from the CLI's --eps/--norm or the checkpoint's."""
        raise NotImplementedError

    def check_inputs(self, x, y, threat, owner: str) -> None:
        raise NotImplementedError

    # -- batches and model calls --------------------------------------------------------------------
    def training_batches(self, x, y, model: nn.Module, cfg, *, rank: int, world: int, with_raw: bool) -> Batches:
        raise NotImplementedError

    def size(self, x) -> int:
        return len(x)

    def take(self, x, idx: torch.Tensor):
        raise NotImplementedError

    def put(self, dest, idx: torch.Tensor, src) -> None:
        """Write ``src`` (inputs for the samples ``idx``) into ``dest`` in place."""
        raise NotImplementedError

    def copy(self, x):
        raise NotImplementedError

    @torch.no_grad()
    def logits(self, model, x, batch_size: int) -> torch.Tensor:
        """(N, classes) float logits on the CPU, in batches."""
        raise NotImplementedError

    def to_device(self, x, device):
        return x

    def chunk_inputs_to_file(self, x) -> tuple[dict[str, torch.Tensor], dict]:
        """A chunk of (adversarial) inputs as (tensors, JSON document), for a resumable audit's state."""
        return {"x_adv": x.detach().cpu().contiguous()}, {}

    def chunk_inputs_from_file(self, tensors: dict[str, torch.Tensor], doc: dict):
        return tensors["x_adv"]

    # -- reports --------------------------------------------------------------------------------------
    def fingerprint(self, x, y: torch.Tensor) -> str:
        raise NotImplementedError

    def example(self, x, x_adv, i: int) -> dict:
        """One gallery entry's input fields (JSON-safe)."""
        raise NotImplementedError

    def save_examples(self, out, x, x_adv, y, pred_clean, pred_adv, class_names) -> dict[str, str]:
        """Write the attacked examples into folder ``out`` in this modality's formats; returns {kind: path}."""
        raise NotImplementedError

    def describe_threat(self, threat) -> str:
        d = threat.to_dict()
        return f"{d['norm']}, eps={d['eps']:.6g}, bounds={d['bounds']}"


def sha256_tensors(*tensors: torch.Tensor) -> str:
    """Hash of exact data (dtype, shape and bytes of each tensor)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
