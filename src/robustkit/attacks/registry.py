"""Attack registry: a plain dict filled by a decorator; one factory that suggests near matches.

Images and texts share it: every class declares ``kind`` ("white-box" | "black-box" | "discrete")
and ``modality`` ("vision" | "text"), so callers filter by what they can run instead of keeping
their own lists.
"""
from __future__ import annotations

import inspect
import sys

from .._validation import check_choice, unknown_name_error

KINDS = ("white-box", "black-box", "discrete")
MODALITIES = ("vision", "text")

_ATTACKS: dict[str, type] = {}


def register_attack(name: str):
    """Class decorator: ``@register_attack("pgd")`` makes the class reachable through :func:`create`."""
    def decorate(cls):
        if name in _ATTACKS:
            raise ValueError(f"attack name {name!r} is already registered by {_ATTACKS[name].__name__}")
        # Checked here, not at first use, so a mislabelled attack fails when its module is imported.
        check_choice(getattr(cls, "kind", None), "kind", KINDS, owner=f"attack {name!r}")
        check_choice(getattr(cls, "modality", None), "modality", MODALITIES, owner=f"attack {name!r}")
        cls.name = name
        _ATTACKS[name] = cls
        return cls
    return decorate


def unregister_attack(name: str) -> None:
    """Remove a registered attack (tests and plugins that register one for a while)."""
    get_class(name)
    del _ATTACKS[name]


def available(kind: str | None = None, modality: str | None = None) -> list[str]:
    """Names accepted by :func:`create`, sorted; optionally only one ``kind`` and/or ``modality``."""
    if kind is not None:
        check_choice(kind, "kind", KINDS, owner="available")
    if modality is not None:
        check_choice(modality, "modality", MODALITIES, owner="available")
    return sorted(n for n, c in _ATTACKS.items()
                  if kind in (None, c.kind) and modality in (None, c.modality))


def _summary(cls) -> str:
    # The class docstring, else its module's (most attacks document the paper there), first paragraph.
    doc = cls.__dict__.get("__doc__") or getattr(sys.modules.get(cls.__module__), "__doc__", None) or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def info(kind: str | None = None, modality: str | None = None) -> dict[str, dict[str, str]]:
    """``{name: {"kind", "modality", "doc"}}`` for listings (``robustkit list``); same filters as :func:`available`."""
    return {n: {"kind": _ATTACKS[n].kind, "modality": _ATTACKS[n].modality, "doc": _summary(_ATTACKS[n])}
            for n in available(kind, modality)}


def get_class(name: str) -> type:
    if name not in _ATTACKS:
        raise ValueError(unknown_name_error("attack", name, _ATTACKS).args[0])
    return _ATTACKS[name]


def create(name: str, threat=None, **params):
    """Build an attack by registry name: ``create("pgd", ThreatModel("linf", 0.1), steps=20)`` or
    ``create("word", SubstitutionThreat(0.2), max_candidates=8)``. Vision attacks need a ThreatModel;
    discrete (text) attacks take a SubstitutionThreat or None.

    Unknown parameters are an error naming the attack's accepted parameters.
    """
    cls = get_class(name)
    try:
        return cls(threat, **params)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            accepted = sorted({p.name for c in cls.__mro__ if c is not object
                               for p in inspect.signature(c.__init__).parameters.values()
                               if p.kind == p.KEYWORD_ONLY})
            raise TypeError(f"{err}. Attack {name!r} accepts: {', '.join(accepted)}.") from None
        raise
