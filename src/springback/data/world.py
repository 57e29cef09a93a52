"""Real data sets shaped like a synthetic world, so every experiment can run on them.

A :class:`DataWorld` offers the data a :class:`~springback.worlds.base.TemplateWorld` offers —
``aligned(n, seed)``, ``opposing(n, seed)``, ``eval_prompts(n)``, ``reference_sets()`` — built from
files or hub datasets named in a :class:`DataConfig` (its scorers and labeller are added by
:class:`springback.pipeline.Source`, which wraps worlds and data sets alike):

* training streams: the aligned / opposing sources, shuffled once per seed; the first m
  examples of a longer stream equal the m of a shorter one (as the worlds' streams do);
* evaluation: distinct prompts of the ``eval`` source, and reference completions A (its
  aligned responses) and N (its opposing ones) for the exact score S = log(π⁺/π⁻) [SPEC §5];
* scorers (``DataConfig.scorers``; :data:`AUTO_SCORERS` when none is named): the labeller is the
  first one thresholded (aligned iff score >= its threshold).

Label filtering ("auto"): a source that holds both labels (an IMDb file, BeaverTails) gives
the aligned stream its aligned rows and the opposing stream its opposing rows; a source with
only one label (e.g. a file of prompt/response pairs) is used whole.
"""

from __future__ import annotations

import dataclasses
import random

from ..errors import ConfigError, SpringbackError
from ..worlds.base import ALIGNED, OPPOSING, Example
from .loading import FORMATS, load_examples


@dataclasses.dataclass
class DataConfig:
    """Real data in place of a synthetic world (an empty ``aligned`` means: use the worlds)."""

    aligned: str = ""  # local csv/json/jsonl/parquet file or hub dataset of aligned examples
    opposing: str = ""  # the same for opposing examples (default: the aligned source)
    eval: str = ""  # evaluation prompts and reference completions (default: aligned source, eval_split)
    format: str = "auto"  # auto | alpaca | truthfulqa | advbench | hh-rlhf | pku-saferlhf | beavertails | imdb | preference | pairs
    template: str = ""  # prompt template name (conversation, raw) or string with {input}; "" = the format's
    split: str = "train"  # hub split for the training sources
    eval_split: str = "test"  # hub split for the evaluation source
    columns: dict[str, str] = dataclasses.field(default_factory=dict)  # format column -> file column
    prefix_words: int = 8  # IMDb: the prompt is the review's first words (our choice; P1 does not say)
    max_words: int = 48  # IMDb: continuation length in words
    n_reference: int = 16  # reference completions per side (A and N) for the exact score S
    scorers: list[str] = dataclasses.field(default_factory=list)  # e.g. [vader] or [classifier:PATH]; [] = auto
    label_map: str = ""  # classifier label mapping, e.g. POSITIVE=1,NEGATIVE=0
    scorer_batch_size: int = 32
    scorer_dtype: str = "float32"


# Scorers used when none is named: the paper's metric where one works offline.
# A refusal matcher for the safety sets (P1's −cost needs the beaver cost model: cost:PATH); none for
# HH-RLHF, whose preferred responses are often helpful answers rather than refusals: name a scorer.
AUTO_SCORERS: dict[str, list[str]] = {"imdb": ["vader"], "beavertails": ["refusal"], "pku-saferlhf": ["refusal"],
                                      "advbench": ["refusal"]}


def _pick(examples: list[Example], want: str) -> list[Example]:
    labels = {e.label for e in examples}
    if ALIGNED in labels and OPPOSING in labels:
        return [e for e in examples if e.label == want]
    return list(examples)


class DataWorld:
    """A world made of real data (see the module docstring). Loads lazily, once."""

    narrowness = 0

    def __init__(self, cfg: DataConfig, name: str = "data"):
        if not (cfg.aligned or cfg.opposing):
            raise ConfigError("data: name a file or hub dataset (data.aligned and/or data.opposing)")
        if cfg.format != "auto" and cfg.format not in FORMATS:
            raise ConfigError(f"data.format: unknown format '{cfg.format}' (choose from: auto, {', '.join(FORMATS)})")
        self.cfg = cfg
        self.name = name
        self._cache: dict[str, list[Example]] = {}
        self._format = "" if cfg.format == "auto" else cfg.format
        self.source = cfg.aligned or cfg.opposing  # decides the format and the default evaluation data
        self.description = f"data {self.source}"

    @property
    def format(self) -> str:
        """The data format, detected from the aligned source's columns when ``auto``."""
        if not self._format:
            from .loading import detect_format, read_table

            self._format = detect_format(read_table(self.source, self.cfg.split)[0])
        return self._format

    @property
    def sentiment_like(self) -> bool:
        """VADER is meaningful on IMDb continuations."""
        return self.format == "imdb"

    # ------------------------------------------------------------------ loading
    def _load(self, source: str, split: str) -> list[Example]:
        key = f"{source}|{split}"
        if key not in self._cache:
            c = self.cfg
            self._cache[key] = load_examples(
                source, c.format, template=c.template or None, columns=c.columns or None, split=split,
                prefix_words=c.prefix_words, max_words=c.max_words,
            )
        return self._cache[key]

    def _stream(self, which: str, n: int, seed: int) -> list[Example]:
        source = self.cfg.aligned if which == ALIGNED else (self.cfg.opposing or self.cfg.aligned)
        if not source:
            raise ConfigError("data.aligned: name a file or hub dataset of aligned examples")
        pool = _pick(self._load(source, self.cfg.split), which)
        if n > len(pool):
            raise SpringbackError(f"asked for {n} {which} examples but {source} has {len(pool)}")
        order = list(range(len(pool)))
        random.Random(f"data/{which}/{seed}").shuffle(order)
        return [pool[i] for i in order[:n]]

    def pool_size(self, which: str) -> int:
        """How many ``which`` (aligned / opposing) examples the training data holds."""
        source = self.cfg.aligned if which == ALIGNED else (self.cfg.opposing or self.cfg.aligned)
        if not source:
            return 0
        return len(_pick(self._load(source, self.cfg.split), which))

    def aligned(self, n: int, seed: int) -> list[Example]:
        return self._stream(ALIGNED, n, seed)

    def n_items(self, kind: str, side: str = ALIGNED) -> int:
        """How many items of ``kind`` (examples, pairs, labelled, prompts) a stage toward ``side``
        can draw: pairs of the pair pool; labelled examples alternate the two sides' pools."""
        other = OPPOSING if side == ALIGNED else ALIGNED
        if kind == "pairs":
            return len(self._pair_pool())
        if kind == "labelled":
            return min(2 * self.pool_size(side), 2 * self.pool_size(other) + 1)
        return self.pool_size(side)

    def _pair_pool(self) -> list:
        """Every preference pair of the training data, preferring the aligned side: the file's own
        pairs for a paired format (HH-RLHF, PKU-SafeRLHF, prompt/chosen/rejected), else the
        aligned and opposing pools paired by :func:`~springback.data.preferences.pairs_from_pools`
        (a fixed pairing, seed 0: the pairs are data, the stream seed only orders them)."""
        if "pairs" not in self._cache:
            from .preferences import PAIRED_FORMATS, load_preferences, pairs_from_pools

            c = self.cfg
            if self.format in PAIRED_FORMATS and not c.opposing:
                pairs = load_preferences(self.source, self.format, template=c.template or None,
                                         columns=c.columns or None, split=c.split)
            else:
                pairs = pairs_from_pools(self.aligned(self.pool_size(ALIGNED), 0), self.opposing(self.pool_size(OPPOSING), 0))
            self._cache["pairs"] = pairs
        return self._cache["pairs"]

    def pairs(self, n: int, seed: int, chosen: str = ALIGNED) -> list:
        """The first ``n`` preference pairs of a seeded order (prefix-consistent, as the example
        streams); ``chosen="opposing"`` mirrors them (a stage that trains toward the opposing side)."""
        from .preferences import mirror

        pool = self._pair_pool()
        if n > len(pool):
            raise SpringbackError(f"asked for {n} preference pairs but {self.source} gives {len(pool)}")
        order = list(range(len(pool)))
        random.Random(f"data/pairs/{seed}").shuffle(order)
        out = [pool[i] for i in order[:n]]
        return mirror(out) if chosen == OPPOSING else out

    def opposing(self, n: int, seed: int) -> list[Example]:
        return self._stream(OPPOSING, n, seed)

    def _eval_examples(self) -> list[Example]:
        """Evaluation examples in a fixed shuffled order: files are often sorted by label (the
        hub's IMDb test split lists every negative review first), and the first prompts and
        references must not all come from one side."""
        if "eval" not in self._cache:
            if self.cfg.eval:
                rows = self._load(self.cfg.eval, self.cfg.eval_split)
            else:
                from .loading import is_local

                if is_local(self.source):
                    raise ConfigError("data.eval: name a file of evaluation prompts (held out from training)")
                rows = self._load(self.source, self.cfg.eval_split)
            rows = list(rows)
            random.Random("data/eval").shuffle(rows)
            self._cache["eval"] = rows
        return self._cache["eval"]

    def eval_prompts(self, n: int) -> list[str]:
        prompts = list(dict.fromkeys(e.prompt for e in self._eval_examples()))
        if n > len(prompts):
            raise SpringbackError(f"asked for {n} evaluation prompts but the evaluation data has {len(prompts)} distinct ones")
        return prompts[:n]

    def reference_sets(self) -> tuple[list[str], list[str]]:
        """(A, N): the first ``n_reference`` distinct aligned and opposing responses of the
        evaluation data; empty sides mean no exact score (the evaluation data lacks a label)."""
        ex = self._eval_examples()
        k = self.cfg.n_reference
        a = list(dict.fromkeys(e.response for e in ex if e.label == ALIGNED))[:k]
        n = list(dict.fromkeys(e.response for e in ex if e.label == OPPOSING))[:k]
        return a, n


def data_key(cfg: DataConfig) -> dict:
    """What of a DataConfig determines results (for content-addressed cells)."""
    from ..config import to_dict

    return to_dict(cfg)
