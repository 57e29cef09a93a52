"""Real datasets as (prompt, response, label) examples and as preference pairs.

``load_examples(source, fmt, ...)`` reads a local csv / tsv / json / jsonl / parquet file
(always; csv and json also ``.gz`` / ``.xz`` / ``.bz2`` compressed) or a Hugging Face dataset
name (when the hub is reachable) and maps its rows to :class:`~springback.worlds.base.Example`
with a built-in adapter (``FORMATS``: Alpaca, TruthfulQA, AdvBench, HH-RLHF, PKU-SafeRLHF,
BeaverTails, IMDb, generic preference and prompt/response pairs, under their published column
names) or an explicit column mapping. Prompts are wrapped in a template (``TEMPLATES``), by
default the paper's ``BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:`` [SPEC §3.2];
IMDb prefixes and HH-RLHF transcripts stay raw.

``load_preferences(source, ...)`` gives :class:`PreferencePair` s (prompt, chosen, rejected)
from paired files (HH-RLHF, PKU-SafeRLHF, prompt/chosen/rejected) or, through
``pairs_from_pools``, from the aligned and opposing examples of a labelled one.

``read_texts(path)`` gives the texts of a file for ``springback compress``.

:class:`DataWorld` (configured by :class:`DataConfig`) gives experiments a real data set with
the interface of a synthetic world: training streams, evaluation prompts, reference
completions and a scorer-based labeller.
"""

from .loading import (
    FORMATS,
    TEMPLATES,
    TEXT_COLUMNS,
    Format,
    apply_template,
    detect_format,
    is_local,
    load_examples,
    read_table,
    read_texts,
    split_lines,
    split_transcript,
)
from .preferences import LabelledExample, PreferencePair, interleave, load_preferences, mirror, pairs_from_pools
from .world import AUTO_SCORERS, DataConfig, DataWorld, data_key

__all__ = ["load_examples", "read_table", "read_texts", "split_lines", "split_transcript", "apply_template",
           "detect_format", "is_local", "FORMATS", "Format", "TEMPLATES", "TEXT_COLUMNS",
           "PreferencePair", "LabelledExample", "load_preferences", "pairs_from_pools", "mirror", "interleave",
           "DataConfig", "DataWorld", "data_key", "AUTO_SCORERS"]
