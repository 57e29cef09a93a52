"""The layers of DESIGN §5: a lower layer never imports a higher one.

Every import in the package is read from the source (function-level imports included: they
are dependencies too) and checked against the layer table below. A module may import its own
top-level part, any part of a strictly lower layer, and nothing else.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "springback"

# Lowest first. Parts on the same line are peers and may NOT import each other.
LAYERS: list[set[str]] = [
    {"errors"},
    {"config", "io", "runtime"},
    {"worlds", "theory", "tokens", "models"},
    {"data", "teacher", "losses"},
    {"objectives"},  # the training objectives: losses on teacher-forced log-probs of encoded items
    {"train", "measure", "analysis"},
    {"report"},  # figures may use analysis (intervals for error bars)
    {"pipeline"},
    {"experiments"},
    {"api"},
    {"cli"},
]
# The package face (``springback/__init__.py``: the public API and ``__version__``) and
# ``__main__`` sit above everything; the version string itself may be read from anywhere.
TOP = {"__init__", "__main__"}


def _layer(part: str) -> int:
    for i, parts in enumerate(LAYERS):
        if part in parts:
            return i
    raise AssertionError(f"springback.{part} is in no layer of tests/test_layers.py: place it there")


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported springback module, line) for every import in one file."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                if node.module:
                    out.append((".".join(base + [node.module]), node.lineno))
                else:  # from . import x  /  from .. import __version__
                    out += [(".".join(base + [a.name]), node.lineno) for a in node.names]
            elif node.module and node.module.split(".")[0] == "springback":
                out += [(f"{node.module}.{a.name}" if node.module == "springback" else node.module, node.lineno)
                        for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "springback"]
    return out


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_layer_imports_a_higher_one():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _part(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if here in TOP:
            continue
        for module, line in _imports(path):
            there = _part(module)
            if there == here or module == "springback.__version__":
                continue
            if there in TOP or _layer(there) >= _layer(here):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({here}) imports {module} ({there})")
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_the_check_catches_a_violation(tmp_path, monkeypatch):
    """The walker sees relative, absolute and function-level imports (so the test above can fail)."""
    pkg = tmp_path / "springback"
    (pkg / "measure").mkdir(parents=True)
    (pkg / "measure" / "x.py").write_text("def f():\n    from ..experiments import base\n")
    (pkg / "measure" / "y.py").write_text("import springback.pipeline.spec\nfrom springback import api\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    found = [(_part(m)) for p in sorted(pkg.rglob("*.py")) for m, _ in _imports(p)]
    assert found == ["experiments", "pipeline", "api"]
    assert all(_layer(p) > _layer("measure") for p in found)
