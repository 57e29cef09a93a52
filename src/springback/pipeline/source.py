"""One interface for a synthetic world or a real data set, built in one place from config.

A cell names its data source as a plain dict (:func:`source_specs` makes them from an
experiment's ``worlds`` / ``world`` / ``data`` config keys); :func:`build_source` turns it into a
:class:`Source`: the tokenizer (a world's own, or None for a real data set, whose model brings
its tokenizer), seeded example streams, evaluation prompts, reference completion sets A and N
where they exist, a labeller and the configured scorers. No experiment branches on "world or
data": they all ask a :class:`Source`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Sequence

from ..config import WorldConfig, to_dict
from ..data import DataConfig
from ..errors import ConfigError
from ..worlds.base import ALIGNED, OPPOSING, UNCLEAR, Example
from .spec import DataSpec


def world_spec(name: str, narrowness: int = 0, scorers: Sequence[str] = (), label_map: str = "") -> dict:
    """A synthetic world as a cell's source (extra ``scorers`` score its samples too)."""
    spec: dict[str, Any] = {"world": name, "narrowness": narrowness}
    if scorers:
        spec.update(scorers=list(scorers), label_map=label_map)
    return spec


def data_spec(cfg: DataConfig) -> dict:
    """A real data set (files or hub datasets) as a cell's source."""
    return {"data": to_dict(cfg)}


def uses_data(data: DataConfig) -> bool:
    """Whether a config's ``data`` section names real data (else the synthetic worlds are used)."""
    return bool(data.aligned or data.opposing)


def source_specs(worlds: Sequence[str], world: WorldConfig, data: DataConfig, chat_template: str = "none") -> list[dict]:
    """The sources an experiment config asks for: its real data set, else each named world.

    With a chat template in use (``chat_template`` other than ``"none"``), data prompts are the
    user's text as it is (template ``raw``) unless ``data.template`` names one: the chat template
    already frames the conversation, and P1's ``BEGINNING OF CONVERSATION: USER: …`` inside it
    would frame it twice."""
    if uses_data(data):
        if chat_template != "none" and not data.template:
            data = dataclasses.replace(data, template="raw")
        return [data_spec(data)]
    return [world_spec(w, world.narrowness) for w in worlds]


@functools.lru_cache(maxsize=32)
def _tokenizer_has_template(path: str, revision: str, trust_remote_code: bool) -> bool:
    from ..models import load_tokenizer

    return bool(getattr(load_tokenizer(path, revision, trust_remote_code), "chat_template", None))


def effective_chat_template(model: Any) -> str:
    """A :class:`~springback.config.ModelConfig`'s chat template as it will be used: ``"auto"`` becomes
    ``"none"`` when the model's tokenizer has no template (tiny presets never have one); a file must exist."""
    from pathlib import Path

    setting = model.chat_template
    if setting in ("none", ""):
        return "none"
    if setting == "auto":
        if not model.path:
            return "none"
        return "auto" if _tokenizer_has_template(model.path, model.revision, model.trust_remote_code) else "none"
    if not Path(setting).expanduser().is_file():
        raise ConfigError(f"model.chat_template must be 'auto', 'none' or a Jinja template file; no such file: '{setting}'")
    return setting


def source_name(spec: dict) -> str:
    """The ``world`` column of a source's rows: the world's name, or ``data:NAME`` (the stem of the
    data file or the hub dataset's name)."""
    if "world" in spec:
        return spec["world"]
    from pathlib import Path

    d = spec["data"]
    return f"data:{Path(d.get('aligned') or d.get('opposing')).stem}"


class Source:
    """A world or a data set with its labeller and scorers (see the module docstring).

    ``inner`` is a :class:`~springback.worlds.base.TemplateWorld` or a
    :class:`~springback.data.DataWorld`; everything not defined here is read from it.
    """

    def __init__(self, spec: dict, inner: Any, scorer_specs: Sequence[str], label_map: str = "",
                 batch_size: int = 32, dtype: str = "float32", world_labels: bool = True):
        self.spec = spec
        self.name = source_name(spec)
        self.inner = inner
        self._scorer_specs = list(scorer_specs)
        self._scorer_opts = {"label_map": label_map or None, "batch_size": batch_size, "dtype": dtype}
        self._scorers: dict[str, Any] | None = None
        self.world_labels = world_labels  # True: the exact world labeller; False: the first scorer

    def __getattr__(self, name: str) -> Any:  # eval_prompts, reference_sets, sentiment_like, pretrain_corpus, ...
        return getattr(self.inner, name)

    @property
    def is_world(self) -> bool:
        return "world" in self.spec

    def tokenizer(self) -> Any:
        """The world's own tokenizer, or None (a real data set uses its model's tokenizer)."""
        return self.inner.tokenizer() if self.is_world else None

    def stream(self, data: DataSpec) -> list[Any]:
        """The first ``data.n_examples`` items of the seeded ``data.side`` stream, of ``data.kind``:

        * ``examples`` / ``prompts`` — :class:`~springback.worlds.base.Example` s of the side (an
          RLOO stage uses only their prompts);
        * ``pairs`` — :class:`~springback.data.PreferencePair` s preferring the side. A world: pair
          i is example i of the side's stream (the very examples an SFT stage of the same seed
          sees) with, as rejected, the response of example i of an independent stream of the other
          side; a data set: its own pairs or its pools paired (:meth:`DataWorld.pairs`);
        * ``labelled`` — :class:`~springback.data.LabelledExample` s alternating the side's
          examples (desirable) and the other side's (undesirable; a world's independent stream).

        Every kind is prefix-consistent: the first m items of a longer stream are those of a shorter one."""
        from ..data import LabelledExample, PreferencePair, interleave

        if data.side not in (ALIGNED, OPPOSING):
            raise ValueError(f"data side must be '{ALIGNED}' or '{OPPOSING}', got {data.side!r}")
        inner = self.inner
        if data.narrowness:
            if not self.is_world:
                raise ConfigError("narrowness (distinct aligned templates) applies to the synthetic worlds only")
            inner = inner.with_narrowness(data.narrowness)
        other = OPPOSING if data.side == ALIGNED else ALIGNED
        draw = {ALIGNED: inner.aligned, OPPOSING: inner.opposing}
        n, seed = data.n_examples, data.seed
        if data.kind in ("examples", "prompts"):
            return draw[data.side](n, seed)
        if data.kind == "pairs":
            if not self.is_world:
                return inner.pairs(n, seed, data.side)
            chosen, rejected = draw[data.side](n, seed), draw[other](n, seed, stream="rejected")
            return [PreferencePair(c.prompt, c.response, r.response) for c, r in zip(chosen, rejected)]
        if data.kind == "labelled":
            n_good, n_bad = (n + 1) // 2, n // 2
            bad = draw[other](n_bad, seed, stream="rejected") if self.is_world else draw[other](n_bad, seed)
            out: list[LabelledExample] = interleave(draw[data.side](n_good, seed), bad, n)
            return out
        raise ValueError(f"unknown data kind {data.kind!r} (examples, pairs, labelled, prompts)")

    def reward(self, side: str) -> Any:
        """RLOO's reward toward ``side``: on a world, 1 for a completion its exact labeller calls
        ``side`` and 0 otherwise (so the mean reward is the sampled aligned rate); on a data set,
        the first configured scorer's score (classifier, reward, cost, refusal, vader: higher =
        aligned), negated for the opposing side. Returns ``f(prompts, texts) -> [float]``."""
        from ..errors import SpringbackError

        if self.world_labels and self.is_world:
            world = self.inner
            return lambda prompts, texts: [1.0 if world.label(t) == side else 0.0 for t in texts]
        scorers = self.scorers()
        if not scorers:
            raise SpringbackError(f"{self.name}: RLOO needs a reward: name a scorer in data.scorers")
        first = next(iter(scorers.values()))
        sign = 1.0 if side == ALIGNED else -1.0
        return lambda prompts, texts: [sign * float(v) for v in first(list(texts), list(prompts))]

    def sft_data(self, n_examples: int, seed: int, n_prompts: int) -> tuple[list[Example], list[str]]:
        """(SFT examples, held-out prompts) for a protocol that fine-tunes on aligned data and then
        answers prompts it never saw (P1 Table 1). A world: its aligned stream and its evaluation
        prompts. A data set: its evaluation prompts when ``data.eval`` names a file, else
        ``n_prompts`` distinct prompts of the aligned data held out (a fixed shuffle, the same for
        every seed) and the first ``n_examples`` of the rest in file order (0 = all of them)."""
        from ..data import load_examples
        from ..errors import SpringbackError

        if self.is_world:
            return self.inner.aligned(n_examples, seed), self.inner.eval_prompts(n_prompts)
        c = self.inner.cfg
        examples = load_examples(c.aligned, c.format, label=ALIGNED, template=c.template or None,
                                 columns=c.columns or None, split=c.split)
        if c.eval:
            prompts = self.inner.eval_prompts(n_prompts)
        else:
            prompts = list(dict.fromkeys(e.prompt for e in examples))
            import random

            random.Random("resistance/held-out").shuffle(prompts)
            if n_prompts < 1 or n_prompts >= len(prompts):
                raise SpringbackError(f"held-out prompts must be in 1..{len(prompts) - 1} ({c.aligned} has "
                                      f"{len(prompts)} distinct prompts)")
            prompts = prompts[:n_prompts]
        held = set(prompts)
        sft = [e for e in examples if e.prompt not in held]
        if n_examples > 0:
            if n_examples > len(sft):
                raise SpringbackError(f"asked for {n_examples} aligned examples but {c.aligned} has {len(sft)} outside "
                                      "the held-out prompts")
            sft = sft[:n_examples]
        return sft, prompts

    # ------------------------------------------------------------------ scoring
    def scorers(self) -> dict[str, Any]:
        """Name -> :class:`~springback.measure.scorers.Scorer`, built once (models load once)."""
        if self._scorers is None:
            from ..measure.scorers import make_scorer

            self._scorers = {}
            for spec in self._scorer_specs:
                s = make_scorer(spec, world=self.inner if self.is_world else None, **self._scorer_opts)
                name = s.name if s.name not in self._scorers else f"{s.name}_{len(self._scorers)}"
                self._scorers[name] = s
        return self._scorers

    def label_batch(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> list[str | None]:
        """Aligned / opposing for each text: the world's exact labeller, else the first scorer
        thresholded; None for every text when a data set has no scorer."""
        if self.world_labels and self.is_world:
            return [self.inner.label(t) for t in texts]
        scorers = self.scorers()
        if not scorers:
            return [None] * len(texts)
        first = next(iter(scorers.values()))
        return [ALIGNED if ok else OPPOSING for ok in first.labels(first(texts, prompts))]

    def label(self, text: str) -> str:
        return self.label_batch([text])[0] or UNCLEAR

    def score_samples(self, texts: Sequence[str], prompts: Sequence[str] | None = None,
                      values: dict[str, list[float]] | None = None) -> dict[str, float]:
        """Row entries for one checkpoint's samples from the configured scorers ({} without any);
        ``values``: per-sample scores already computed by :meth:`score_each`."""
        if not self._scorer_specs:
            return {}
        from ..measure.scorers import sample_scores

        return sample_scores(self.scorers(), texts, prompts, values)

    def score_each(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> dict[str, list[float]]:
        """Each configured scorer's score of each text (name -> scores)."""
        from ..measure.scorers import score_each

        return score_each(self.scorers(), texts, prompts) if self._scorer_specs else {}

    def check(self, n_eval_prompts: int) -> None:
        """Fail before any training on data, prompts or scorers that do not work."""
        self.scorers()
        self.eval_prompts(n_eval_prompts)


@functools.lru_cache(maxsize=16)
def _build(spec_json: str) -> Source:
    from ..data import AUTO_SCORERS, DataWorld
    from ..worlds import get_world

    spec = json.loads(spec_json)
    if "world" in spec:
        world = get_world(spec["world"], spec.get("narrowness", 0))
        return Source(spec, world, spec.get("scorers", []), spec.get("label_map", ""))
    cfg = DataConfig(**spec["data"]) if isinstance(spec["data"], dict) else spec["data"]
    data = DataWorld(cfg)
    specs = list(cfg.scorers) or AUTO_SCORERS.get(data.format, [])
    return Source(spec, data, specs, cfg.label_map, cfg.scorer_batch_size, cfg.scorer_dtype, world_labels=False)


def build_source(spec: dict) -> Source:
    """The :class:`Source` a cell's source spec names (built once per process)."""
    return _build(json.dumps(spec, sort_keys=True))
