"""Real datasets as (prompt, response, label) examples.

``load_examples(source, fmt, ...)`` reads a local csv / json / jsonl / parquet file (always)
or a Hugging Face dataset name (when the hub is reachable) and maps its rows to
:class:`~springback.worlds.base.Example` with a built-in adapter (``FORMATS``) or an
explicit column mapping. Prompts are wrapped in a template (``TEMPLATES``), by default the
paper's ``BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:`` [SPEC §3.2].
"""

from __future__ import annotations

from .loading import FORMATS, TEMPLATES, apply_template, load_examples, read_table

__all__ = ["load_examples", "read_table", "apply_template", "FORMATS", "TEMPLATES"]
