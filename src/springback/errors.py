"""User-facing errors.

Anything the user can fix (a bad name, a bad value, a missing file) raises
:class:`SpringbackError`; the CLI prints its message on one line and exits 2.
Programming errors stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations


class SpringbackError(Exception):
    """An error caused by the user's input; the message names the problem."""


class ConfigError(SpringbackError):
    """A configuration value, key, file or override is invalid."""


class DivergenceError(SpringbackError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, stage: str, step: int, loss: float, cell: str = ""):
        where = f" (cell '{cell}' marked failed in failed_cells.jsonl)" if cell else ""
        super().__init__(f"training diverged in stage '{stage}' at step {step}: loss = {loss}{where}")
        self.stage = stage
        self.step = step
        self.loss = loss
