"""Reading tables and mapping their rows to examples. See the package docstring."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

from ..errors import SpringbackError
from ..worlds.base import ALIGNED, OPPOSING, Example

# The paper's SFT prompt template [SPEC §3.2]; IMDb uses the raw prefix.
TEMPLATES: dict[str, str] = {
    "conversation": "BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:",
    "raw": "{input}",
}

_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def apply_template(template: str, text: str) -> str:
    """Wrap ``text`` in a named template or a custom string containing ``{input}``."""
    tpl = TEMPLATES.get(template, template)
    if "{input}" not in tpl:
        raise SpringbackError(f"prompt template must be one of {', '.join(TEMPLATES)} or contain '{{input}}': {template!r}")
    return tpl.replace("{input}", text)


def is_local(source: str) -> bool:
    """Whether ``source`` names a local file (a path, or a name with a data-file suffix)."""
    path = Path(source).expanduser()
    return source.startswith((".", "/", "~")) or path.suffix.lower() in _SUFFIXES or path.exists()


# Rows already read, keyed by (source, split, file size, mtime): an experiment asks for the
# same file for its aligned, opposing and evaluation sets, and hub datasets are slow to read.
_TABLES: dict[tuple, list[dict[str, Any]]] = {}


def read_table(source: str, split: str = "train") -> list[dict[str, Any]]:
    """Rows of a local csv / json / jsonl / parquet file, or of a hub dataset ``split``.

    The returned list is shared between calls: treat it as read-only."""
    path = Path(source).expanduser()
    stat = path.stat() if path.is_file() else None
    key = (str(path) if stat else source, split, stat.st_size if stat else None, stat.st_mtime_ns if stat else None)
    if key not in _TABLES:
        if len(_TABLES) > 16:
            _TABLES.clear()
        _TABLES[key] = _read_table(source, split)
    return _TABLES[key]


def _read_table(source: str, split: str) -> list[dict[str, Any]]:
    from ..runtime import quiet_hf

    quiet_hf()
    path = Path(source).expanduser()
    if is_local(source):
        if not path.exists():
            raise SpringbackError(f"data file not found: {source}")
        kind = _SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise SpringbackError(f"unsupported data file type '{path.suffix}' (use .csv, .json, .jsonl or .parquet)")
        if kind == "json":
            rows = _read_json(path)
        else:
            rows = _read_frame(path, kind)
    else:
        from ..models import hub_reachable

        if not hub_reachable():
            raise SpringbackError(
                f"'{source}' is not a local file and the Hugging Face hub is not reachable (offline?): "
                "pass a local .csv/.json/.jsonl/.parquet file"
            )
        import datasets

        try:
            ds = datasets.load_dataset(source, split=split)
        except Exception as exc:  # noqa: BLE001
            raise SpringbackError(
                f"cannot load dataset '{source}' from the Hugging Face hub ({str(exc).splitlines()[0]}); "
                "offline? pass a local .csv/.json/.jsonl/.parquet file instead"
            ) from None
        rows = [dict(r) for r in ds]
    if not rows:
        raise SpringbackError(f"dataset {source} is empty")
    return rows


def _read_frame(path: Path, kind: str) -> list[dict]:
    """Rows of a csv / parquet file as plain Python values. pandas, not ``datasets``, reads
    local files: it accepts a header-only file (then reported as empty, not as a crash) and
    writes no cache."""
    import numpy as np
    import pandas as pd

    try:
        # keep_default_na=False: an empty csv cell is "", not NaN (NaN would be truthy).
        df = pd.read_csv(path, keep_default_na=False) if kind == "csv" else pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - one clear line for a malformed file
        raise SpringbackError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None

    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return [plain(x) for x in v.tolist()]
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, float) and v != v:  # NaN (missing parquet value)
            return None
        return v

    return [{str(k): plain(v) for k, v in r.items()} for r in df.to_dict("records")]


def _read_json(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            data = json.loads(text)
        else:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise SpringbackError(f"malformed JSON in {path} (line {exc.lineno}): {exc.msg}") from None
    if not all(isinstance(r, dict) for r in data):
        raise SpringbackError(f"{path}: every record must be a JSON object")
    return data


def _need(row: dict, cols: list[str], source: str) -> None:
    missing = [c for c in cols if c not in row]
    if missing:
        raise SpringbackError(f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(sorted(row))})")


def _truthy_safe(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "safe")
    return bool(v)


# Each adapter maps one row to a list of examples (prompt already templated).
Adapter = Callable[[dict, str, dict], list[Example]]


def _alpaca(row: dict, template: str, opts: dict) -> list[Example]:
    instr = row["instruction"] + (("\n" + row["input"]) if row.get("input") else "")
    return [Example(apply_template(template, instr), row["output"], ALIGNED)]


def _truthfulqa(row: dict, template: str, opts: dict) -> list[Example]:
    prompt = apply_template(template, row["question"])
    out = []
    best = row.get("best_answer")
    correct = row.get("correct_answers") or ([best] if best else [])
    if isinstance(correct, str):
        correct = [c.strip() for c in correct.split(";") if c.strip()]
    incorrect = row.get("incorrect_answers") or []
    if isinstance(incorrect, str):
        incorrect = [c.strip() for c in incorrect.split(";") if c.strip()]
    out += [Example(prompt, a, ALIGNED) for a in ([best] if best else correct[:1])]
    out += [Example(prompt, a, OPPOSING) for a in incorrect[:1]]
    return out


def _beavertails(row: dict, template: str, opts: dict) -> list[Example]:
    safe_col = "is_safe" if "is_safe" in row else "is_response_0_safe" if "is_response_0_safe" in row else None
    if safe_col is None:
        raise SpringbackError("BeaverTails-format data needs 'prompt', 'response' and 'is_safe' columns")
    resp = row["response"] if "response" in row else row["response_0"]
    return [Example(apply_template(template, row["prompt"]), resp, ALIGNED if _truthy_safe(row[safe_col]) else OPPOSING)]


def _imdb(row: dict, template: str, opts: dict) -> list[Example]:
    # Prompt = the review's first ``prefix_words`` words, response = the next ``max_words``
    # (P1 does not give its prefix length; 8 words is our default).
    words = str(row["text"]).replace("<br />", " ").split()
    n = int(opts.get("prefix_words", 8))
    if n < 1 or int(opts.get("max_words", 48)) < 1:
        raise SpringbackError(f"IMDb prefix_words and max_words must be >= 1, got {n} and {opts.get('max_words')}")
    if len(words) <= n:
        return []
    label = ALIGNED if int(row["label"]) == 1 else OPPOSING
    return [Example(apply_template(template, " ".join(words[:n])), " " + " ".join(words[n : n + int(opts.get("max_words", 48))]), label)]


def _pairs(row: dict, template: str, opts: dict) -> list[Example]:
    label = row.get("label", ALIGNED)
    if label not in (ALIGNED, OPPOSING):
        label = ALIGNED if _truthy_safe(label) else OPPOSING
    return [Example(apply_template(template, str(row["prompt"])), str(row["response"]), label)]


FORMATS: dict[str, tuple[list[str], Adapter, str]] = {
    # name: (required columns, adapter, default template)
    "alpaca": (["instruction", "output"], _alpaca, "conversation"),
    "truthfulqa": (["question"], _truthfulqa, "conversation"),
    "beavertails": (["prompt"], _beavertails, "conversation"),
    "imdb": (["text", "label"], _imdb, "raw"),
    "pairs": (["prompt", "response"], _pairs, "conversation"),
}


def detect_format(row: dict) -> str:
    """The built-in format whose columns ``row`` has (first match in a fixed order)."""
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "question" in row and ("best_answer" in row or "correct_answers" in row):
        return "truthfulqa"
    if "prompt" in row and ("is_safe" in row or "is_response_0_safe" in row):
        return "beavertails"
    if "text" in row and "label" in row:
        return "imdb"
    if "prompt" in row and "response" in row:
        return "pairs"
    raise SpringbackError(f"cannot tell the data format from columns {', '.join(sorted(row))}; set the format explicitly")


def load_examples(
    source: str,
    fmt: str = "auto",
    *,
    label: str | None = None,
    template: str | None = None,
    columns: dict[str, str] | None = None,
    split: str = "train",
    limit: int | None = None,
    seed: int = 0,
    shuffle: bool = False,
    **options: Any,
) -> list[Example]:
    """Examples from a local file or hub dataset.

    ``fmt``: one of ``FORMATS`` or ``auto``. ``label``: keep only ``aligned`` or ``opposing``
    examples (e.g. safe vs unsafe BeaverTails responses, positive vs negative IMDb reviews).
    ``columns`` renames file columns to the format's names, e.g. ``{"prompt": "question"}``.
    ``template``: a name in ``TEMPLATES`` or a string with ``{input}`` (default: the format's).
    """
    rows = read_table(source, split)
    if columns:
        _need(rows[0], list(columns.values()), source)
        rows = [{**r, **{k: r[v] for k, v in columns.items()}} for r in rows]
    name = detect_format(rows[0]) if fmt == "auto" else fmt
    if name not in FORMATS:
        raise SpringbackError(f"unknown data format '{fmt}' (choose from: auto, {', '.join(FORMATS)})")
    required, adapter, default_template = FORMATS[name]
    _need(rows[0], required, source)
    tpl = template or default_template
    apply_template(tpl, "")  # validate once
    if label not in (None, "", ALIGNED, OPPOSING):
        raise SpringbackError(f"label filter must be 'aligned' or 'opposing', got {label!r}")
    out: list[Example] = []
    for row in rows:
        _need(row, required, source)
        out.extend(e for e in adapter(row, tpl, options) if not label or e.label == label)
    if shuffle:
        random.Random(seed).shuffle(out)
    if limit is not None:
        out = out[:limit]
    if not out:
        raise SpringbackError(f"no {label or ''} examples in {source} (format {name})".replace("  ", " "))
    return out
