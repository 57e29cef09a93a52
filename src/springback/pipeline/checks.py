"""Everything a run's cells will need from their data, checked before any training.

A file with too few examples, a prompt or reference completion too long for its stage or for
the measurement, a scorer that cannot load — each found now, in one line, before hours of
training and before the run directory exists.
"""

from __future__ import annotations

import sys
from typing import Any

from ..config import stable_hash
from ..errors import SpringbackError
from .source import build_source
from .spec import Cell


def _tokenizer(cell: Cell, source: Any, cache: dict) -> Any:
    """The tokenizer the cell's model will use: the world's, or the checkpoint's (loaded alone)."""
    if not cell.base.path:
        return source.tokenizer()
    key = (cell.base.path, cell.base.revision)
    if key not in cache:
        from ..models import load_tokenizer

        cache[key] = load_tokenizer(cell.base.path, cell.base.revision, cell.base.trust_remote_code)
    return cache[key]


def check_cells(cells: list[Cell], report: Any = None) -> list[str]:
    """Check every cell's data before any training; return (and write to ``report``, stderr by
    default) one line per stage whose examples truncation will cut or drop."""
    from ..config import MeasureConfig
    from ..tokens import Encoder
    from .stages import check_stage_algorithm, encode_stream, stage_encoder

    seen: set = set()
    tokenizers: dict = {}
    lines: list[str] = []
    for cell in cells:
        if cell.runner != "stages" and not cell.stages:
            continue
        src = build_source(cell.source)
        n_eval = cell.measure.params.get("n_eval_prompts")
        key = (stable_hash(cell.source), n_eval)
        if key not in seen:
            seen.add(key)
            src.scorers()
            if n_eval:
                src.eval_prompts(n_eval)
        if not cell.stages and "measure" not in cell.measure.params:
            continue
        tok = _tokenizer(cell, src, tokenizers)
        chat = cell.model_options.get("chat_template", "none")
        measure = cell.measure.params.get("measure")
        if measure is not None and n_eval:
            mkey = ("measure", stable_hash(cell.source), stable_hash(cell.base.key()), chat, measure.get("max_length"))
            if mkey not in seen:
                seen.add(mkey)
                a_set, n_set = src.reference_sets()
                limit = MeasureConfig(**measure).max_length
                enc = Encoder(tok, chat, None)  # lengths before any truncation
                longest = max((len(enc.encode("", c).input_ids) for c in list(a_set) + list(n_set)), default=0)
                if longest > limit:
                    raise SpringbackError(f"{cell.experiment}: a reference completion of {src.name} has {longest} tokens, "
                                          f"more than measure.max_length={limit}: raise measure.max_length")
        for stage in cell.stages:
            try:
                check_stage_algorithm(stage.name, stage.train, stage.data)
            except SpringbackError as exc:
                raise type(exc)(f"{cell.experiment}: {exc}") from None
            skey = (stable_hash(cell.source), stable_hash(stage.data), stable_hash(cell.base.key()), chat,
                    stage.train.max_length, stage.train.truncation)
            if skey in seen:
                continue
            seen.add(skey)
            try:
                _, _, rep = encode_stream(src, stage.data, stage_encoder(tok, cell, stage.train))
            except SpringbackError as exc:
                raise SpringbackError(f"{cell.experiment} stage '{stage.name}' ({cell.name}): {exc}") from None
            if rep.n_truncated or rep.n_dropped:
                lines.append(f"springback: {cell.experiment} stage '{stage.name}' ({cell.name}): {rep.summary()}")
    out = report if report is not None else sys.stderr
    for line in lines:
        print(line, file=out)
    return lines
