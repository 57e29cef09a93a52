"""Real datasets as (prompt, response, label) examples.

``load_examples(source, fmt, ...)`` reads a local csv / json / jsonl / parquet file (always)
or a Hugging Face dataset name (when the hub is reachable) and maps its rows to
:class:`~springback.worlds.base.Example` with a built-in adapter (``FORMATS``) or an
explicit column mapping. Prompts are wrapped in a template (``TEMPLATES``), by default the
paper's ``BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:`` [SPEC §3.2].

:class:`DataWorld` (configured by :class:`DataConfig`) gives experiments a real data set with
the interface of a synthetic world: training streams, evaluation prompts, reference
completions and a scorer-based labeller.
"""

from .loading import FORMATS, TEMPLATES, apply_template, detect_format, is_local, load_examples, read_table
from .world import AUTO_SCORERS, DataConfig, DataWorld, data_key

__all__ = ["load_examples", "read_table", "apply_template", "detect_format", "is_local", "FORMATS", "TEMPLATES",
           "DataConfig", "DataWorld", "data_key", "AUTO_SCORERS"]
