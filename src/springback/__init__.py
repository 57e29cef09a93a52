"""springback: measure how strongly language models resist alignment.

Python API (the CLI mirrors it): :func:`run`, :func:`reproduce`, :func:`load_results`,
:func:`load_result`, :func:`resolve_config`, :func:`elasticity`, :func:`align`, :func:`compare`,
:func:`compress`.
"""

__version__ = "0.1.0"

from .api import align, compare, compress, elasticity, load_result, load_results, reproduce, resolve_config, run  # noqa: E402

__all__ = ["run", "reproduce", "align", "compare", "compress", "load_results", "load_result", "resolve_config", "elasticity",
           "__version__"]
