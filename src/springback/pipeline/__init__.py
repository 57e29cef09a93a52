"""The one pipeline every experiment is built from (DESIGN §5).

config ──► :class:`~.source.Source` (a world or a data set, built once) ──► cells (a base plus
stages, as data: :mod:`.spec`) ──► :func:`~.runner.execute` (one function runs any cell;
``records.jsonl`` rows follow :mod:`.records`) ──► analysis ──► report.
"""

from .bases import DEFAULT_PRETRAIN, base_path, pretrain_spec
from .context import RunContext
from .runner import cell_id, execute, run_cell
from .source import (
    Source,
    build_source,
    data_spec,
    effective_chat_template,
    source_name,
    source_specs,
    uses_data,
    world_spec,
)
from .spec import BaseSpec, Cell, DataSpec, MeasureSpec, Stage, StopRule, labels, stage_data
from .stages import clone, finetune

__all__ = ["BaseSpec", "Cell", "DataSpec", "MeasureSpec", "Stage", "StopRule", "labels", "stage_data", "RunContext", "Source",
           "build_source", "data_spec", "effective_chat_template", "source_name", "source_specs", "uses_data", "world_spec", "DEFAULT_PRETRAIN",
           "base_path", "pretrain_spec", "cell_id", "execute", "run_cell", "clone", "finetune"]
