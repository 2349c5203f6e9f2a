"""Backbone registry: ``create_backbone(name, **kwargs)`` builds any registered network."""
from __future__ import annotations

from collections.abc import Callable

from .base import Backbone

BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[type[Backbone]], type[Backbone]]:
    def register(cls: type[Backbone]) -> type[Backbone]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        BACKBONES[name] = cls
        return cls
    return register


def create_backbone(name: str, **kwargs) -> Backbone:
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None
    return builder(**kwargs)


from . import (  # noqa: E402,F401
    convlstm,
    simvp,  # noqa: E402,F401  (registers itself)
    tau,
)
