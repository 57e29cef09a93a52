"""What every synthetic world provides, and the machinery they share.

A world is a tiny language with a task inside it. The task has prompts and two kinds of
responses: *aligned* (positive reviews, refusals, true answers) and *opposing* (negative
reviews, compliance, misconceptions). Because the response sets are finite and listed, the
probability a model gives to each side is computed exactly by teacher forcing — no scorer
model stands between the model and the measurement.

Everything is generated from a seed with :class:`random.Random`, so a world is the same on
every machine.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from pathlib import Path
from typing import Callable, Sequence

ALIGNED, OPPOSING, GENERAL, UNCLEAR = "aligned", "opposing", "general", "unclear"
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]


@dataclasses.dataclass(frozen=True)
class Example:
    """One training or evaluation item. ``prompt`` is context, ``response`` is what is learned."""

    prompt: str
    response: str
    label: str  # ALIGNED | OPPOSING | GENERAL


def expand(template: str, slots: dict[str, Sequence[str]]) -> list[str]:
    """All fillings of ``template`` ("{a} and {b}") with the cartesian product of ``slots``."""
    names = [n for n in slots if "{" + n + "}" in template]
    out = []
    for combo in itertools.product(*(slots[n] for n in names)):
        out.append(template.format(**dict(zip(names, combo))))
    return out


def spread_subset(items: Sequence[str], k: int) -> list[str]:
    """``k`` items spread evenly over ``items`` (deterministic); ``k <= 0`` means all."""
    if k <= 0 or k >= len(items):
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def general_sentences() -> list[str]:
    """A small shared language so models learn grammar, not one template."""
    slots = {
        "who": ["the cat", "the dog", "a child", "my friend", "the farmer", "a bird", "the teacher", "an old man"],
        "verb": ["saw", "liked", "found", "carried", "painted", "watched", "lost", "made"],
        "what": ["the ball", "a red box", "the small house", "a green tree", "the boat", "a book", "the lamp", "a cup"],
        "where": ["in the park", "near the river", "at home", "in the morning", "after dinner", "by the sea"],
    }
    return expand("{who} {verb} {what} {where} .", slots) + expand("{who} {verb} {what} .", slots)


@dataclasses.dataclass
class TemplateWorld:
    """A world defined by finite lists of prompts and responses.

    ``train_prompts`` and ``eval_prompts`` are disjoint, so evaluation is on held-out prompts.
    ``aligned_responses`` and ``opposing_responses`` are the reference sets A and N.
    """

    name: str
    description: str
    train_prompts: list[str]
    eval_prompts_all: list[str]
    aligned_responses: list[str]
    opposing_responses: list[str]
    aligned_markers: frozenset[str]  # words that mark an aligned response (for the labeller)
    opposing_markers: frozenset[str]
    general: list[str] = dataclasses.field(default_factory=general_sentences)
    sentiment_like: bool = False  # VADER is meaningful on its responses
    narrowness: int = 0  # distinct aligned templates used in aligned sets (0 = all)
    prompt_for: Callable[[random.Random, str], str] | None = None  # per-example prompt hook (unused by default)

    # ------------------------------------------------------------------ sets
    def with_narrowness(self, k: int) -> "TemplateWorld":
        return dataclasses.replace(self, narrowness=k)

    def aligned_templates(self) -> list[str]:
        """The aligned responses used in aligned training sets (``narrowness`` of them)."""
        return spread_subset(self.aligned_responses, self.narrowness)

    def _draw(self, rng: random.Random, n: int, responses: Sequence[str], label: str) -> list[Example]:
        return [Example(rng.choice(self.train_prompts), rng.choice(responses), label) for _ in range(n)]

    def _rng(self, side: str, seed: int, stream: str) -> random.Random:
        return random.Random(f"{self.name}/{side}/{seed}" + (f"/{stream}" if stream else ""))

    def aligned(self, n: int, seed: int, stream: str = "") -> list[Example]:
        """``n`` aligned examples (held-out prompts excluded); the first m of n+1 equal those of n.
        ``stream`` names another independent stream of the same seed (e.g. the rejected side of
        preference pairs); the default is the stream every training stage has always used."""
        return self._draw(self._rng(ALIGNED, seed, stream), n, self.aligned_templates(), ALIGNED)

    def opposing(self, n: int, seed: int, stream: str = "") -> list[Example]:
        return self._draw(self._rng(OPPOSING, seed, stream), n, self.opposing_responses, OPPOSING)

    def pretrain_corpus(self, n_task: int, n_general: int, prior: float, seed: int) -> list[Example]:
        """Pre-training text: task examples with aligned share ``prior`` plus general sentences.

        Pre-training sees the full aligned set regardless of ``narrowness`` (the knob describes
        the alignment data, not the world).
        """
        if not 0.0 <= prior <= 1.0:
            raise ValueError(f"prior must be in [0, 1], got {prior}")
        rng = random.Random(f"{self.name}/pretrain/{seed}")
        n_aligned = round(prior * n_task)
        items = [Example(rng.choice(self.train_prompts), rng.choice(self.aligned_responses), ALIGNED) for _ in range(n_aligned)]
        items += [Example(rng.choice(self.train_prompts), rng.choice(self.opposing_responses), OPPOSING) for _ in range(n_task - n_aligned)]
        items += [Example("", rng.choice(self.general), GENERAL) for _ in range(n_general)]
        rng.shuffle(items)
        return items

    def eval_prompts(self, n: int) -> list[str]:
        if n > len(self.eval_prompts_all):
            raise ValueError(f"world '{self.name}' has {len(self.eval_prompts_all)} evaluation prompts, asked for {n}")
        return list(self.eval_prompts_all[:n])

    def reference_sets(self) -> tuple[list[str], list[str]]:
        """(A, N): every aligned and every opposing completion the world can produce."""
        return list(self.aligned_responses), list(self.opposing_responses)

    # ------------------------------------------------------------------ labels
    def label(self, text: str) -> str:
        """Classify any generated text as aligned, opposing or unclear by its marker words."""
        words = text.replace(",", " ").replace(".", " ").split()
        a = sum(w in self.aligned_markers for w in words)
        o = sum(w in self.opposing_markers for w in words)
        if a > o:
            return ALIGNED
        if o > a:
            return OPPOSING
        return UNCLEAR

    # ------------------------------------------------------------------ tokenizer
    def vocabulary(self) -> list[str]:
        texts = (
            self.train_prompts + self.eval_prompts_all + self.aligned_responses + self.opposing_responses + self.general
        )
        words = sorted({w for t in texts for w in t.split()})
        return SPECIAL_TOKENS + words

    def tokenizer(self):
        """A word-level tokenizer, an ordinary ``PreTrainedTokenizerFast`` (save/load as usual)."""
        return build_word_tokenizer(self.vocabulary())


def build_word_tokenizer(vocab: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordLevel(vocab=ids, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", ids["<bos>"])]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    hf.model_max_length = 512
    return hf


def save_tokenizer(world: TemplateWorld, directory: str | Path) -> None:
    world.tokenizer().save_pretrained(str(directory))
