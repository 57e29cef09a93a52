"""Synthetic worlds with known ground truth. ``WORLDS`` maps CLI names to constructors."""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from . import safety, sentiment, truthful
from .base import ALIGNED, GENERAL, OPPOSING, UNCLEAR, Example, TemplateWorld

WORLDS: dict[str, Callable[[], TemplateWorld]] = {
    "sentiment": sentiment.make,
    "safety": safety.make,
    "truthful": truthful.make,
}


def get_world(name: str, narrowness: int = 0) -> TemplateWorld:
    """The world called ``name`` with the given narrowness (0 = all aligned templates)."""
    if name not in WORLDS:
        raise ConfigError(f"unknown world '{name}' (choose from: {', '.join(WORLDS)})")
    return WORLDS[name]().with_narrowness(narrowness)


__all__ = ["WORLDS", "get_world", "Example", "TemplateWorld", "ALIGNED", "OPPOSING", "GENERAL", "UNCLEAR"]
