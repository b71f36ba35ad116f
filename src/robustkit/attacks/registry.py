"""Attack registry: a plain dict filled by a decorator; one factory that suggests near matches."""
from __future__ import annotations

from .._validation import unknown_name_error

_ATTACKS: dict[str, type] = {}


def register_attack(name: str):
    def decorate(cls):
        if name in _ATTACKS:
            raise ValueError(f"attack name {name!r} is already registered by {_ATTACKS[name].__name__}")
        cls.name = name
        _ATTACKS[name] = cls
        return cls
    return decorate


def available() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return sorted(_ATTACKS)


def get_class(name: str) -> type:
    if name not in _ATTACKS:
        raise unknown_name_error("attack", name, _ATTACKS)
    return _ATTACKS[name]


def create(name: str, threat, **params):
    """Build an attack by registry name: ``create("pgd", ThreatModel("linf", 0.1), steps=20)``.

    Unknown parameters are an error naming the attack's accepted parameters.
    """
    cls = get_class(name)
    try:
        return cls(threat, **params)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            import inspect
            accepted = sorted({p.name for c in cls.__mro__ if c is not object
                               for p in inspect.signature(c.__init__).parameters.values()
                               if p.kind == p.KEYWORD_ONLY})
            raise TypeError(f"{err}. Attack {name!r} accepts: {', '.join(accepted)}.") from None
        raise
