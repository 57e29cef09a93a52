"""Self-contained reports: results -> ``report.html`` (figures inlined) and ``report.md``."""

from .html import write_report

__all__ = ["write_report"]
