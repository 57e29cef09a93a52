"""Scorers of generated text. ``SCORERS`` maps CLI names to factories.

A scorer is a plain function ``texts -> list[float]`` (higher = more aligned).
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..worlds.base import ALIGNED


def world_label_scorer(world) -> Callable[[Sequence[str]], list[float]]:
    """1.0 when the world's labeller calls a text aligned, else 0.0 (exact ground truth)."""

    def score(texts: Sequence[str]) -> list[float]:
        return [1.0 if world.label(t) == ALIGNED else 0.0 for t in texts]

    return score


_VADER = None


def vader_scorer() -> Callable[[Sequence[str]], list[float]]:
    """VADER compound sentiment in [-1, 1] (Hutto & Gilbert 2014); lexicon ships with the package."""
    global _VADER
    if _VADER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _VADER = SentimentIntensityAnalyzer()
    analyzer = _VADER

    def score(texts: Sequence[str]) -> list[float]:
        return [float(analyzer.polarity_scores(t)["compound"]) for t in texts]

    return score


SCORERS: dict[str, str] = {
    "world": "exact label from the synthetic world's labeller (1 = aligned)",
    "vader": "VADER compound sentiment score in [-1, 1] (offline lexicon)",
}
