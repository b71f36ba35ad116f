"""Training objectives, one per file, each registered under its method name (DESIGN decision 4).

A new objective is a class with ``@register_objective("name")`` that declares its attributes
(``modalities``, ``needs_threat``, ``single_step``, ``select_best_by``, ``needs_raw_inputs``) and,
if it needs them, the ``before_step``/``after_step`` hooks; the trainer needs no change.
"""
from .base import (AdversarialObjective, Objective, Stats, available_objectives, create_objective, crafting_model,
                   get_objective_class, register_objective)
# Imported for their registration side effect; none imports transformers.
from . import standard, fgsm, pgd, mixed, trades, mart, awp, embed_pgd, freelb, smart, augment, ascc, random_sub  # noqa: F401, E402

__all__ = ["AdversarialObjective", "Objective", "Stats", "available_objectives", "create_objective", "crafting_model",
           "get_objective_class", "register_objective"]
