"""Adversarial attacks for images and texts, one per module, reachable by name from one registry.

``create(name, threat=None, **params)``, ``available(kind=None, modality=None)`` and ``info()`` are a
stable public contract. Every attack is called the same way, ``attack(model, x, y, *, target=None) ->
x_adv``: vision attacks (``Attack``) take tensors and a ``ThreatModel``; discrete text attacks
(``DiscreteAttack``: "word", "char") take a list of str and a ``SubstitutionThreat`` (or None) and keep
the per-example details of their last call in ``attack.last_results``.
"""
from .base import Attack, ce_loss, dlr_loss, input_grad, margin
from .discrete import AttackResult, DiscreteAttack, budget, check_constraints
from .registry import KINDS, MODALITIES, available, create, get_class, info, register_attack, unregister_attack

# Importing the modules registers the attacks.
from . import apgd, char, cw, fgsm, mifgsm, noise, pgd, square, transfer, word_substitution  # noqa: E402,F401
from . import text_transfer  # noqa: E402,F401  (after word_substitution: it wraps the text attacks)
from .char import CharAttack  # noqa: E402
from .word_substitution import WordSubstitutionAttack  # noqa: E402

__all__ = ["Attack", "AttackResult", "CharAttack", "DiscreteAttack", "KINDS", "MODALITIES", "WordSubstitutionAttack",
           "available", "budget", "ce_loss", "check_constraints", "create", "dlr_loss", "get_class", "info",
           "input_grad", "margin", "register_attack", "unregister_attack"]
