"""Sentiment world: film reviews (SPEC §3.2's IMDb task in miniature).

Aligned = positive review, opposing = negative review. The words are ordinary English
sentiment words, so VADER (a real lexicon scorer) agrees with the world's own labels.
"""

from __future__ import annotations

from .base import TemplateWorld, expand

POSITIVE = ["great", "superb", "wonderful", "brilliant", "lovely", "excellent"]
NEGATIVE = ["awful", "boring", "terrible", "dull", "horrible", "bad"]
ASPECTS = ["story", "acting", "music", "ending"]

_TITLES = expand(
    "{adj} {noun}",
    {
        "adj": ["the silent", "the red", "the last", "the hidden", "the broken", "the golden", "the long", "the cold", "the lost", "the quiet"],
        "noun": ["harbor", "river", "winter", "garden", "city", "mountain", "letter", "island"],
    },
)
_FRAMES = ["review of {t} :", "my thoughts on {t} :"]


def _responses(words: list[str]) -> list[str]:
    out = expand("the {aspect} was {a} and the {aspect2} was {b} .", {"aspect": ["story"], "aspect2": ["acting"], "a": words, "b": words})
    out += expand("it was {a} , the {aspect} was {b} .", {"aspect": ["music", "ending"], "a": words, "b": words})
    return out


def make() -> TemplateWorld:
    titles = list(_TITLES)  # 80 titles in a fixed order; the last 16 are held out
    train_titles, eval_titles = titles[:-16], titles[-16:]
    train_prompts = [f.format(t=t) for t in train_titles for f in _FRAMES]
    eval_prompts = [_FRAMES[i % 2].format(t=t) for i, t in enumerate(eval_titles)]
    return TemplateWorld(
        name="sentiment",
        description="film reviews; aligned = positive, opposing = negative (IMDb-like)",
        train_prompts=train_prompts,
        eval_prompts_all=eval_prompts,
        aligned_responses=_responses(POSITIVE),
        opposing_responses=_responses(NEGATIVE),
        aligned_markers=frozenset(POSITIVE),
        opposing_markers=frozenset(NEGATIVE),
        sentiment_like=True,
    )
