"""Hardening: prune, quantize and export robust models, then re-audit them honestly.

- :mod:`.prune`: global magnitude pruning (``torch.nn.utils.prune``), structured channel pruning
  (``torch-pruning``), made permanent in the weights.
- :mod:`.quantize`: int8 static (conv networks), dynamic (linear layers, text models) and
  quantization-aware fine-tuning, with ``torch.ao.quantization`` (eager mode, x86 backend).
- :mod:`.export`: ONNX export checked against ONNX Runtime; :class:`~.export.OnnxModel` runs it.
- :mod:`.reaudit`: audits of non-differentiable models (transfer from the float twin + black-box).
- :mod:`.run`: ``harden(source, ...)``, the pipeline behind ``robustkit harden``.
"""
from __future__ import annotations

from . import family as _family  # noqa: F401 - registers the "hardened" checkpoint family
from .measure import file_size, latency, parameter_stats
from .prune import magnitude_prune, make_permanent, prunable_layers, structured_prune, weight_sparsity
from .quantize import QuantizedModel, prepare_qat, quantize_dynamic_int8, quantize_static
from .run import harden

__all__ = ["QuantizedModel", "file_size", "harden", "latency", "magnitude_prune", "make_permanent",
           "parameter_stats", "prepare_qat", "prunable_layers", "quantize_dynamic_int8", "quantize_static",
           "structured_prune", "weight_sparsity"]
