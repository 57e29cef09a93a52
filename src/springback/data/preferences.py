"""Preference pairs (prompt, chosen, rejected) for the preference-optimisation stages (DPO, IPO, SimPO).

Where pairs come from
---------------------
* **Paired files** keep the pairs their publishers annotated:

  - ``hh-rlhf`` (``chosen``, ``rejected`` transcripts): the prompt is the shared conversation up
    to and including the last ``"\\n\\nAssistant:"``, chosen / rejected are the two final
    assistant turns (see :func:`~springback.data.loading.split_transcript`). A row whose two
    transcripts differ *before* the final turn has no shared prompt; it is skipped with a warning
    that counts such rows.
  - ``pku-saferlhf``: chosen = ``response_{safer_response_id}``, rejected = the other response
    (``prefer="better"`` uses ``better_response_id``, the helpfulness preference, instead). Rows
    where both responses are safe (or both unsafe) are kept: the annotators still ranked them.
  - ``preference``: a generic ``prompt, chosen, rejected`` layout with text cells.

* **Labelled files** (IMDb, BeaverTails, TruthfulQA, ``pairs`` with a label) become pairs with
  :func:`pairs_from_pools` from their aligned and opposing examples.

KTO needs no pairs: its desirable / undesirable examples are the labelled examples that
:func:`~springback.data.loading.load_examples` already gives.

Direction: pairs prefer the aligned side. For an *opposing* stage (preference optimisation
toward the opposing data, P1's inverse direction) pass ``chosen="opposing"`` or use
:func:`mirror`, which swaps chosen and rejected.
"""

from __future__ import annotations

import dataclasses
import random
import warnings
from collections import defaultdict, deque
from typing import Any, Sequence

from ..errors import SpringbackError
from ..worlds.base import ALIGNED, OPPOSING, Example
from .loading import apply_template, load_examples, prepared_rows, split_transcript

# Formats whose rows are already pairs; every other format is paired by ``pairs_from_pools``.
PAIRED_FORMATS = ("hh-rlhf", "pku-saferlhf", "preference")


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """One comparison: ``chosen`` is preferred over ``rejected`` as a reply to ``prompt``."""

    prompt: str
    chosen: str
    rejected: str


@dataclasses.dataclass(frozen=True)
class LabelledExample:
    """One unpaired example for KTO: ``response`` to ``prompt`` is desirable or not."""

    prompt: str
    response: str
    desirable: bool


def interleave(desirable: Sequence[Example], undesirable: Sequence[Example], n: int) -> list[LabelledExample]:
    """``n`` labelled examples alternating desirable (even positions) and undesirable (odd ones),
    in the order of each pool: balanced (the KTO paper's λ_D·n_D / λ_U·n_U = 1 with unit weights)
    and prefix-consistent (the first m of n + 1 equal the first m of n). Needs ⌈n/2⌉ desirable
    and ⌊n/2⌋ undesirable examples."""
    out = []
    for i in range(n):
        e = desirable[i // 2] if i % 2 == 0 else undesirable[i // 2]
        out.append(LabelledExample(e.prompt, e.response, i % 2 == 0))
    return out


def mirror(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """The same pairs with chosen and rejected swapped (for a stage that trains toward the opposing side)."""
    return [PreferencePair(p.prompt, p.rejected, p.chosen) for p in pairs]


def pairs_from_pools(aligned: Sequence[Example], opposing: Sequence[Example], seed: int = 0) -> list[PreferencePair]:
    """Pairs (chosen = aligned response, rejected = opposing response) from two pools of examples.

    1. Same prompt where the data has it: each aligned example, in order, takes the first unused
       opposing example with an identical prompt (TruthfulQA's best vs best incorrect answer;
       BeaverTails' safe and unsafe replies to one prompt).
    2. Otherwise a seeded pairing: the aligned examples left over, in order, meet the opposing
       examples left over in an order shuffled by ``random.Random(seed)``. The pair keeps the
       aligned example's prompt; the opposing example contributes only its response. This suits
       IMDb, where every prompt is the first words of a different review: the rejected reply is
       a negative review's continuation.

    Pairs come out in the order of ``aligned``; examples of the longer pool that find no partner
    are left out (so the result has min(len(aligned), len(opposing)) pairs at most).
    """
    by_prompt: dict[str, deque[int]] = defaultdict(deque)
    for j, o in enumerate(opposing):
        by_prompt[o.prompt].append(j)
    partner: list[int | None] = [None] * len(aligned)
    used = [False] * len(opposing)
    for i, a in enumerate(aligned):
        queue = by_prompt.get(a.prompt)
        if queue:
            j = queue.popleft()
            partner[i], used[j] = j, True
    rest = [j for j in range(len(opposing)) if not used[j]]
    random.Random(seed).shuffle(rest)
    rest_iter = iter(rest)
    out = []
    for i, a in enumerate(aligned):
        j = partner[i] if partner[i] is not None else next(rest_iter, None)
        if j is not None:
            out.append(PreferencePair(a.prompt, a.response, opposing[j].response))
    return out


def _choice(v: Any, what: str) -> int:
    """A 0/1 response id from a cell (int, float, bool or text as csv gives it)."""
    try:
        k = int(float(v)) if not isinstance(v, bool) else int(v)
    except (TypeError, ValueError):
        k = -1
    if k not in (0, 1):
        raise SpringbackError(f"{what} must be 0 or 1, got {v!r}")
    return k


def _paired(rows: list[dict], form: str, tpl: str, source: str, prefer: str) -> list[PreferencePair]:
    out: list[PreferencePair] = []
    skipped = 0
    id_col = f"{prefer}_response_id"
    if form == "pku-saferlhf" and id_col not in rows[0]:
        raise SpringbackError(f"{source}: missing column {id_col} (needed for prefer={prefer!r})")
    for i, row in enumerate(rows):
        try:
            if form == "hh-rlhf":
                prompt, chosen = split_transcript(_str(row, "chosen"))
                prompt_r, rejected = split_transcript(_str(row, "rejected"))
                if prompt_r != prompt:
                    skipped += 1
                    continue
            elif form == "pku-saferlhf":
                k = _choice(row[id_col], id_col)
                prompt, chosen, rejected = _str(row, "prompt"), _str(row, f"response_{k}"), _str(row, f"response_{1 - k}")
            else:
                prompt, chosen, rejected = _str(row, "prompt"), _str(row, "chosen"), _str(row, "rejected")
        except SpringbackError as exc:
            raise SpringbackError(f"{source}: row {i + 1}: {exc}") from None
        out.append(PreferencePair(apply_template(tpl, prompt), chosen, rejected))
    if skipped:
        warnings.warn(f"{source}: skipped {skipped} of {len(rows)} rows whose chosen and rejected transcripts "
                      "differ before the final assistant turn (no shared prompt)", stacklevel=3)
    return out


def _str(row: dict, col: str) -> str:
    v = row.get(col)
    if not isinstance(v, str):
        raise SpringbackError(f"'{col}' must be text, got {type(v).__name__} (chat-message lists are not supported)")
    return v


def load_preferences(
    source: str,
    fmt: str = "auto",
    template: str | None = None,
    columns: dict[str, str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    *,
    prefer: str = "safer",
    chosen: str = ALIGNED,
    split: str = "train",
    shuffle: bool = False,
    **options: Any,
) -> list[PreferencePair]:
    """Preference pairs from a local file or hub dataset (see the module docstring).

    ``fmt``: ``auto`` or a name in ``FORMATS``; ``template`` / ``columns`` / ``options`` as for
    :func:`~springback.data.loading.load_examples` (HH-RLHF keeps its own framing: template
    ``raw``). ``prefer``: PKU-SafeRLHF's ``safer`` (default) or ``better`` preference.
    ``chosen="opposing"`` mirrors every pair. ``seed`` drives the pool pairing of labelled
    formats and ``shuffle``; ``limit`` keeps the first pairs after that.
    """
    if prefer not in ("safer", "better"):
        raise SpringbackError(f"{source}: prefer must be 'safer' or 'better', got {prefer!r}")
    if chosen not in (ALIGNED, OPPOSING):
        raise SpringbackError(f"{source}: chosen must be 'aligned' or 'opposing', got {chosen!r}")
    rows, form = prepared_rows(source, fmt, columns, split)
    tpl = template or form.template
    apply_template(tpl, "")  # validate once
    if form.name in PAIRED_FORMATS:
        pairs = _paired(rows, form.name, tpl, source, prefer)
    else:
        examples = load_examples(source, form.name, template=template, columns=columns, split=split, **options)
        aligned = [e for e in examples if e.label == ALIGNED]
        opposing = [e for e in examples if e.label == OPPOSING]
        if not aligned or not opposing:
            lacking = ALIGNED if not aligned else OPPOSING
            raise SpringbackError(f"{source}: format {form.name} gives no {lacking} examples, so no preference pairs "
                                  "(pair it with another source through pairs_from_pools)")
        pairs = pairs_from_pools(aligned, opposing, seed)
    if chosen == OPPOSING:
        pairs = mirror(pairs)
    if shuffle:
        random.Random(seed).shuffle(pairs)
    if limit is not None:
        pairs = pairs[:limit]
    if not pairs:
        raise SpringbackError(f"no preference pairs in {source} (format {form.name})")
    return pairs
