"""Adversarial attacks, one per module, reachable by name.

``create(name, threat, **params)`` and ``available()`` are a stable public contract.
"""
from .base import Attack, ce_loss, dlr_loss, input_grad, margin
from .registry import available, create, get_class, register_attack

# Importing the modules registers the attacks.
from . import apgd, cw, fgsm, mifgsm, noise, pgd, square, transfer  # noqa: E402,F401

__all__ = ["Attack", "available", "create", "get_class", "register_attack", "ce_loss", "dlr_loss", "margin",
           "input_grad"]
