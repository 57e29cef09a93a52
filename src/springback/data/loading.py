"""Reading data files and mapping their rows to examples. See the package docstring.

Files
-----
``read_table`` reads a local ``.csv`` / ``.tsv`` / ``.json`` (an array) / ``.jsonl`` (``.ndjson``) /
``.parquet`` file — csv, tsv and JSON optionally compressed as ``.gz``, ``.xz`` or ``.bz2``, as
HH-RLHF (``.jsonl.gz``) and BeaverTails (``.jsonl.xz``) ship — or a hub dataset split.
``read_texts`` gives the texts of a file for ``springback compress``.

Text is split into lines on ``"\\n"`` only (a trailing ``"\\r"`` is dropped). ``str.splitlines``
would also break on U+0085, U+2028, U+2029 and other separators that occur *inside* reviews and
transcripts; JSON Lines written with ``ensure_ascii=False`` carry them raw.

Formats
-------
``FORMATS`` maps a format name to its columns and an adapter turning one row into labelled
:class:`~springback.worlds.base.Example` s. Column names are matched ignoring case, spaces,
hyphens and underscores ("Best Answer" = ``best_answer``), so the authors' csv headers work as
they are published. ``detect_format`` picks a format from the columns (see its docstring for the
order).

==============  =========================================  ==========================================
format          columns (as published)                     examples per row
==============  =========================================  ==========================================
alpaca          instruction, input, output (tatsu-lab's    one aligned: instruction (+ "\\n" + input)
                release adds ``text``)                     -> output
truthfulqa      csv: Type, Category, Question, Best        aligned: best answer (else the first
                Answer, [Best Incorrect Answer], Correct   correct one); opposing: best incorrect
                Answers, Incorrect Answers, Source (lists  answer (else the first incorrect one)
                joined by "; "); hub: question,
                best_answer, correct_answers,
                incorrect_answers (lists)
advbench        goal, target (harmful_behaviors.csv)       one opposing: goal -> target (no aligned
                                                           side: see below)
hh-rlhf         chosen, rejected (whole transcripts)       chosen final turn aligned, rejected final
                                                           turn opposing, each after its own prompt
pku-saferlhf    prompt, response_0, response_1,            both responses, safe = aligned
                is_response_0_safe, is_response_1_safe,
                better_response_id, safer_response_id
                (+ *_source, *_harm_category, ... )
beavertails     prompt, response, category, is_safe        one: safe = aligned
imdb            text, label (0/1, hub) or review,          prompt: the first ``prefix_words`` words,
                sentiment ("positive"/"negative",          response: the next ``max_words``;
                Kaggle csv)                                label 1 / positive = aligned
preference      prompt, chosen, rejected                   chosen aligned, rejected opposing
pairs           prompt, response, [label]                  one (label default: aligned)
==============  =========================================  ==========================================

* **AdvBench** lists harmful requests with the *compliant* opening the GCG attack targets; it has
  no refusal, so it yields opposing examples only and asking it for aligned ones is an error. An
  aligned side must come from data that has one (e.g. BeaverTails' safe responses); springback
  does not invent a refusal template.
* **HH-RLHF** transcripts keep their own framing: the prompt is the transcript up to and
  including the last ``"\\n\\nAssistant:"`` and the response is the rest (with its leading space),
  as the DPO reference code splits them (eric-mitchell/direct-preference-optimization,
  ``preference_datasets.py``, ``extract_anthropic_prompt``). Their default template is therefore
  ``raw``; wrapping them in the conversation template would frame a dialogue twice.
* **IMDb** reviews lose their ``<br />`` tags; prompt and continuation are joined words, so any
  whitespace run (including U+0085 / U+2028 inside a review) becomes one space. Rows whose
  label is -1 (the hub's ``unsupervised`` split) are skipped.
* ``columns`` maps a format's column (or a role: ``prompt``, ``response``, ``label``) to a file
  column, e.g. ``columns={"text": "body"}`` or ``columns={"prompt": "question_text"}``.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import lzma
import random
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import SpringbackError
from ..worlds.base import ALIGNED, OPPOSING, Example

# The paper's SFT prompt template [SPEC §3.2]; IMDb uses the raw prefix.
TEMPLATES: dict[str, str] = {
    "conversation": "BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:",
    "raw": "{input}",
}

_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".ndjson": "json", ".parquet": "parquet"}
_COMPRESSIONS = {".gz": "gzip", ".xz": "xz", ".bz2": "bz2"}

# Columns ``read_texts`` takes a table's texts from, first match wins (names compared as in
# ``canonical``): the hub's IMDb / C4 / wikitext ``text``, Kaggle IMDb's ``review``, ...
TEXT_COLUMNS: tuple[str, ...] = ("text", "review", "content", "document", "body", "sentence")


def apply_template(template: str, text: str) -> str:
    """Wrap ``text`` in a named template or a custom string containing ``{input}``."""
    tpl = TEMPLATES.get(template, template)
    if "{input}" not in tpl:
        raise SpringbackError(f"prompt template must be one of {', '.join(TEMPLATES)} or contain '{{input}}': {template!r}")
    return tpl.replace("{input}", text)


# ----------------------------------------------------------------------------- files


def file_kind(path: str | Path) -> tuple[str | None, str | None]:
    """``(kind, compression)`` from a file name: ``train.jsonl.gz`` -> ``("json", "gzip")``.

    ``kind`` is None for anything that is not a table (plain text, unknown suffixes)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    return (_SUFFIXES.get(suffixes[-1]) if suffixes else None), compression


def is_local(source: str) -> bool:
    """Whether ``source`` names a local file (a path, or a name with a data-file suffix)."""
    path = Path(source).expanduser()
    return source.startswith((".", "/", "~")) or file_kind(path)[0] is not None or path.exists()


def read_text_file(path: str | Path, compression: str | None = None) -> str:
    """The whole of a UTF-8 text file (a leading byte-order mark dropped), decompressed if asked."""
    p = Path(path)
    opener: Callable[..., Any] = {None: open, "gzip": gzip.open, "xz": lzma.open, "bz2": bz2.open}[compression]
    try:
        with opener(p, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise SpringbackError(f"data file not found: {p}") from None
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise SpringbackError(f"cannot read {p} ({compression or 'plain'}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpringbackError(f"data file {p} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` split on ``"\\n"`` only, each without a trailing ``"\\r"``.

    Unlike ``str.splitlines`` this keeps U+0085, U+2028, U+2029, form feeds and other
    separators inside a line, where real reviews and JSON Lines records carry them."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last line; it does not start a new one
    return [line[:-1] if line.endswith("\r") else line for line in lines]


# Rows already read, keyed by (source, split, file size, mtime): an experiment asks for the
# same file for its aligned, opposing and evaluation sets, and hub datasets are slow to read.
_TABLES: dict[tuple, list[dict[str, Any]]] = {}


def read_table(source: str, split: str = "train") -> list[dict[str, Any]]:
    """Rows of a local csv / tsv / json / jsonl / parquet file, or of a hub dataset ``split``.

    csv and tsv cells are read as text (a csv has no types: "007" stays "007") and an empty
    cell is "". The returned list is shared between calls: treat it as read-only."""
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
        if not path.is_file():
            raise SpringbackError(f"data file not found: {source}")
        kind, compression = file_kind(path)
        if kind is None:
            raise SpringbackError(
                f"{source}: unsupported data file type '{''.join(path.suffixes) or path.name}' "
                "(use .csv, .tsv, .json, .jsonl or .parquet; .gz/.xz/.bz2 compressed csv/json also work)"
            )
        if kind == "parquet" and compression:
            raise SpringbackError(f"{source}: parquet files are compressed inside; drop the '{path.suffixes[-1]}' wrapper")
        rows = _read_json(path, compression) if kind == "json" else _read_frame(path, kind, compression)
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


def _plain(v: Any) -> Any:
    """A pandas / pyarrow cell as plain Python: arrays -> lists, numpy scalars -> Python, NaN -> None."""
    import numpy as np

    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):  # a parquet struct, e.g. BeaverTails' ``category``
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and v != v:  # NaN (missing parquet value)
        return None
    return v


def _read_frame(path: Path, kind: str, compression: str | None) -> list[dict]:
    """Rows of a csv / tsv / parquet file. pandas, not ``datasets``, reads local files: it
    accepts a header-only file (then reported as empty, not as a crash) and writes no cache."""
    import pandas as pd

    try:
        if kind == "parquet":
            df = pd.read_parquet(path)
        else:
            # dtype=str + na_filter=False: every cell is the text the file holds ("" when
            # empty, never NaN, "007" never 7). utf-8-sig drops an Excel byte-order mark.
            df = pd.read_csv(path, sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False,
                             na_filter=False, encoding="utf-8-sig", compression=compression)
    except Exception as exc:  # noqa: BLE001 - one clear line for a malformed file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpringbackError(f"cannot read {path}: {msg}") from None
    return [{str(k): _plain(v) for k, v in r.items()} for r in df.to_dict("records")]


def _read_json(path: Path, compression: str | None = None) -> list[dict]:
    """Records of a JSON array or of JSON Lines (one object per ``"\\n"``-separated line)."""
    text = read_text_file(path, compression)
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpringbackError(f"malformed JSON in {path} (line {exc.lineno}): {exc.msg}") from None
    else:
        data = []
        for n, line in enumerate(split_lines(text), 1):
            if not line.strip():
                continue
            try:
                data.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SpringbackError(f"malformed JSON in {path} (line {n}): {exc.msg}") from None
    if not all(isinstance(r, dict) for r in data):
        raise SpringbackError(f"{path}: every record must be a JSON object")
    return data


# ----------------------------------------------------------------------------- columns


def canonical(name: str) -> str:
    """A column name compared loosely: ``"Best Answer"``, ``"best-answer"`` -> ``"best_answer"``."""
    return "_".join(str(name).strip().lower().replace("-", " ").replace("_", " ").split())


def _canonical_rows(rows: list[dict]) -> list[dict]:
    """Rows with canonical column names, where that clashes with no existing column."""
    first = rows[0]
    rename = {c: canonical(c) for c in first if canonical(c) != c and canonical(c) not in first}
    if not rename:
        return rows
    return [{rename.get(k, k): v for k, v in r.items()} for r in rows]


def _truthy_safe(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "safe")
    return bool(v)


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def answer_list(v: Any) -> list[str]:
    """TruthfulQA answers as a list: hub lists as they are, csv strings split on ";" and
    stripped (the authors' ``split_multi_answer``, sylinrl/TruthfulQA ``truthfulqa/utilities.py``;
    unlike it we add no closing period)."""
    if v is None:
        return []
    items = v.split(";") if isinstance(v, str) else list(v)
    return [s for s in (_text(x).strip() for x in items) if s]


# Each adapter maps one row to a list of examples (prompt already templated).
Adapter = Callable[[dict, str, dict], list[Example]]


@dataclasses.dataclass(frozen=True)
class Format:
    """A data layout: the columns it needs, how a row becomes examples, and its default template."""

    name: str
    columns: tuple[tuple[str, ...], ...]  # required columns; each entry lists accepted names
    adapter: Adapter
    template: str  # default prompt template (a TEMPLATES name)
    roles: dict[str, str] = dataclasses.field(default_factory=dict)  # prompt/response/label -> column
    labels: tuple[str, ...] = (ALIGNED, OPPOSING)  # the labels its examples can carry

    def missing(self, row: dict) -> list[str]:
        """Required columns ``row`` lacks (alternatives written ``a|b``)."""
        return ["|".join(alts) for alts in self.columns if not any(a in row for a in alts)]


def _alpaca(row: dict, template: str, opts: dict) -> list[Example]:
    instr = _text(row["instruction"]) + (("\n" + _text(row["input"])) if row.get("input") else "")
    return [Example(apply_template(template, instr), _text(row["output"]), ALIGNED)]


def _truthfulqa(row: dict, template: str, opts: dict) -> list[Example]:
    prompt = apply_template(template, _text(row["question"]))
    best = _text(row.get("best_answer")).strip()
    good = [best] if best else answer_list(row.get("correct_answers"))[:1]
    worst = _text(row.get("best_incorrect_answer")).strip()  # the 2025 csv adds this column
    bad = [worst] if worst else answer_list(row.get("incorrect_answers"))[:1]
    return [Example(prompt, a, ALIGNED) for a in good] + [Example(prompt, a, OPPOSING) for a in bad]


def _advbench(row: dict, template: str, opts: dict) -> list[Example]:
    return [Example(apply_template(template, _text(row["goal"])), _text(row["target"]), OPPOSING)]


HH_ASSISTANT = "\n\nAssistant:"


def split_transcript(transcript: str) -> tuple[str, str]:
    """An HH-RLHF transcript -> (prompt up to and including the last ``"\\n\\nAssistant:"``, final turn).

    The final turn keeps its leading space, so ``prompt + response == transcript``."""
    i = transcript.rfind(HH_ASSISTANT)
    if i < 0:
        raise SpringbackError(f"transcript has no '\\n\\nAssistant:' turn: {transcript[:60]!r}")
    cut = i + len(HH_ASSISTANT)
    return transcript[:cut], transcript[cut:]


def _hh_rlhf(row: dict, template: str, opts: dict) -> list[Example]:
    out = []
    for col, label in (("chosen", ALIGNED), ("rejected", OPPOSING)):
        prompt, response = split_transcript(_text(row[col]))
        out.append(Example(apply_template(template, prompt), response, label))
    return out


def _pku_saferlhf(row: dict, template: str, opts: dict) -> list[Example]:
    prompt = apply_template(template, _text(row["prompt"]))
    return [Example(prompt, _text(row[f"response_{i}"]), ALIGNED if _truthy_safe(row[f"is_response_{i}_safe"]) else OPPOSING)
            for i in (0, 1)]


def _beavertails(row: dict, template: str, opts: dict) -> list[Example]:
    label = ALIGNED if _truthy_safe(row["is_safe"]) else OPPOSING
    return [Example(apply_template(template, _text(row["prompt"])), _text(row["response"]), label)]


_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SENTIMENT = {"1": ALIGNED, "positive": ALIGNED, "pos": ALIGNED, "0": OPPOSING, "negative": OPPOSING, "neg": OPPOSING}


def _imdb(row: dict, template: str, opts: dict) -> list[Example]:
    # Prompt = the review's first ``prefix_words`` words, response = the next ``max_words``
    # (P1 does not give its prefix length; 8 words is our default).
    raw = row["label"] if "label" in row else row["sentiment"]
    key = _text(raw).strip().lower()
    if key in ("-1", "unlabeled", "unsup"):  # the hub's unsupervised split
        return []
    if key not in _SENTIMENT:
        raise SpringbackError(f"IMDb label must be 0/1 or positive/negative, got {raw!r}")
    n, m = int(opts.get("prefix_words", 8)), int(opts.get("max_words", 48))
    if n < 1 or m < 1:
        raise SpringbackError(f"IMDb prefix_words and max_words must be >= 1, got {n} and {m}")
    words = _BR.sub(" ", _text(row["text"] if "text" in row else row["review"])).split()
    if len(words) <= n:
        return []
    return [Example(apply_template(template, " ".join(words[:n])), " " + " ".join(words[n : n + m]), _SENTIMENT[key])]


def _preference(row: dict, template: str, opts: dict) -> list[Example]:
    prompt = apply_template(template, _text(row["prompt"]))
    for col in ("chosen", "rejected"):
        if not isinstance(row[col], str):
            raise SpringbackError(f"'{col}' must be text, got {type(row[col]).__name__} (chat-message lists are not supported)")
    return [Example(prompt, row["chosen"], ALIGNED), Example(prompt, row["rejected"], OPPOSING)]


def _pairs(row: dict, template: str, opts: dict) -> list[Example]:
    label = row.get("label", ALIGNED)
    if label not in (ALIGNED, OPPOSING):
        label = ALIGNED if _truthy_safe(label) else OPPOSING
    return [Example(apply_template(template, _text(row["prompt"])), _text(row["response"]), label)]


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("alpaca", (("instruction",), ("output",)), _alpaca, "conversation",
               {"prompt": "instruction", "response": "output"}, (ALIGNED,)),
        Format("truthfulqa", (("question",), ("best_answer", "correct_answers", "incorrect_answers")), _truthfulqa,
               "conversation", {"prompt": "question", "response": "best_answer"}),
        Format("advbench", (("goal",), ("target",)), _advbench, "conversation",
               {"prompt": "goal", "response": "target"}, (OPPOSING,)),
        Format("hh-rlhf", (("chosen",), ("rejected",)), _hh_rlhf, "raw"),
        Format("pku-saferlhf", (("prompt",), ("response_0",), ("response_1",), ("is_response_0_safe",),
                                ("is_response_1_safe",)), _pku_saferlhf, "conversation"),
        Format("beavertails", (("prompt",), ("response",), ("is_safe",)), _beavertails, "conversation",
               {"label": "is_safe"}),
        Format("imdb", (("text", "review"), ("label", "sentiment")), _imdb, "raw"),
        Format("preference", (("prompt",), ("chosen",), ("rejected",)), _preference, "conversation"),
        Format("pairs", (("prompt",), ("response",)), _pairs, "conversation"),
    ]
}


def format_named(fmt: str, source: str = "") -> Format:
    """The format called ``fmt`` (case, ``_`` and ``-`` ignored: ``HH_RLHF`` = ``hh-rlhf``)."""
    key = canonical(fmt).replace("_", "-")
    for name, f in FORMATS.items():
        if name == key or name.replace("-", "") == key.replace("-", ""):
            return f
    where = f"{source}: " if source else ""
    raise SpringbackError(f"{where}unknown data format '{fmt}' (choose from: auto, {', '.join(FORMATS)})")


def detect_format(row: dict) -> str:
    """The built-in format whose columns ``row`` has (column names compared as in ``canonical``).

    Order: preference pairs first (``prompt``/``chosen``/``rejected``, then HH-RLHF's bare
    ``chosen``/``rejected``), PKU-SafeRLHF (``response_0``/``response_1``), BeaverTails
    (``prompt``/``response``/``is_safe``), Alpaca (``instruction``/``output``; before IMDb, as
    tatsu-lab's release also has a ``text`` column), TruthfulQA, AdvBench, IMDb, generic pairs."""
    cols = {canonical(c) for c in row}
    has = cols.issuperset
    if has({"chosen", "rejected"}):
        return "preference" if "prompt" in cols else "hh-rlhf"
    if has({"prompt", "response_0", "response_1"}):
        return "pku-saferlhf"
    if has({"prompt", "response", "is_safe"}):
        return "beavertails"
    if has({"instruction", "output"}):
        return "alpaca"
    if "question" in cols and cols & {"best_answer", "correct_answers", "incorrect_answers"}:
        return "truthfulqa"
    if has({"goal", "target"}):
        return "advbench"
    if cols & {"text", "review"} and cols & {"label", "sentiment"}:
        return "imdb"
    if has({"prompt", "response"}):
        return "pairs"
    raise SpringbackError(f"cannot tell the data format from columns {', '.join(sorted(map(str, row)))}; set the format explicitly")


def prepared_rows(
    source: str, fmt: str = "auto", columns: dict[str, str] | None = None, split: str = "train"
) -> tuple[list[dict[str, Any]], Format]:
    """Rows of ``source`` renamed for a format, and that format (detected when ``fmt="auto"``).

    ``columns`` (format column or role -> file column) is applied first, then column names are
    made canonical, then roles (``prompt``/``response``/``label``) are copied to the format's own
    columns. Raises :class:`SpringbackError` naming ``source`` for a missing column."""
    rows = read_table(source, split)
    if columns:
        missing = [v for v in columns.values() if v not in rows[0]]
        if missing:
            raise SpringbackError(f"{source}: missing column(s) {', '.join(missing)} named in columns= (found: {', '.join(map(str, rows[0]))})")
        rows = [{**r, **{k: r[v] for k, v in columns.items()}} for r in rows]
    rows = _canonical_rows(rows)
    spec = detect_format(rows[0]) if fmt == "auto" else fmt
    form = format_named(spec, source)
    if columns:
        roles = {form.roles[k]: k for k in columns if k in form.roles and k not in {a for alts in form.columns for a in alts}}
        if roles:
            rows = [{**r, **{col: r[k] for col, k in roles.items()}} for r in rows]
    lacking = form.missing(rows[0])
    if lacking:
        raise SpringbackError(f"{source}: missing column(s) {', '.join(lacking)} for format {form.name} "
                              f"(found: {', '.join(map(str, rows[0]))})")
    return rows, form


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
    ``columns`` maps the format's names (or the roles prompt/response/label) to file columns,
    e.g. ``{"prompt": "question"}``. ``template``: a name in ``TEMPLATES`` or a string with
    ``{input}`` (default: the format's). ``options``: ``prefix_words``, ``max_words`` (IMDb).
    """
    if label not in (None, "", ALIGNED, OPPOSING):
        raise SpringbackError(f"{source}: label filter must be 'aligned' or 'opposing', got {label!r}")
    rows, form = prepared_rows(source, fmt, columns, split)
    if label and label not in form.labels:
        raise SpringbackError(
            f"{source}: format {form.name} has no {label} examples (it holds {'/'.join(form.labels)} ones only"
            + ("; AdvBench lists harmful requests with compliant openings and no refusals" if form.name == "advbench" else "")
            + ")"
        )
    tpl = template or form.template
    apply_template(tpl, "")  # validate once
    out: list[Example] = []
    for i, row in enumerate(rows):
        lacking = form.missing(row)
        if lacking:
            raise SpringbackError(f"{source}: row {i + 1}: missing column(s) {', '.join(lacking)}")
        try:
            examples = form.adapter(row, tpl, options)
        except SpringbackError as exc:
            raise SpringbackError(f"{source}: row {i + 1}: {exc}") from None
        out.extend(e for e in examples if not label or e.label == label)
    if shuffle:
        random.Random(seed).shuffle(out)
    if limit is not None:
        out = out[:limit]
    if not out:
        raise SpringbackError(f"no {label or ''} examples in {source} (format {form.name})".replace("  ", " "))
    return out


# ----------------------------------------------------------------------------- texts (springback compress)


def _cut_to_bytes(texts: Sequence[str], max_bytes: int) -> list[str]:
    """Texts in order until their UTF-8 bytes reach ``max_bytes``; the last one is cut at a character boundary."""
    kept, used = [], 0
    for t in texts:
        b = t.encode("utf-8")
        if used + len(b) <= max_bytes:
            kept.append(t)
            used += len(b)
            continue
        rest = b[: max_bytes - used].decode("utf-8", errors="ignore")  # drops a split character
        if rest.strip():
            kept.append(rest)
        break
    return kept


def read_texts(path: str | Path, max_bytes: int | None = None, column: str | None = None) -> list[str]:
    """Texts of a data file, for ``springback compress``.

    * Tables (``.csv``, ``.tsv``, ``.json``, ``.jsonl``, ``.parquet``, compressed csv/json): the
      column ``column``, else the first of ``TEXT_COLUMNS`` the file has (``text``, ``review``,
      ``content``, ...), else the responses of its detected format (e.g. Alpaca's ``output``).
      Empty cells are skipped.
    * Anything else is plain text: one text per non-blank line, lines split on ``"\\n"`` only.

    ``max_bytes`` keeps texts in order until their UTF-8 bytes reach it, cutting the last one
    at a character boundary.
    """
    p = Path(path)
    if not p.is_file():
        raise SpringbackError(f"data file not found: {p}")
    if max_bytes is not None and max_bytes < 1:
        raise SpringbackError(f"--max-bytes must be >= 1, got {max_bytes}")
    kind, compression = file_kind(p)
    if kind is None:
        texts = [line for line in split_lines(read_text_file(p, compression)) if line.strip()]
    else:
        texts = _table_texts(p, column)
    if max_bytes is not None:
        texts = _cut_to_bytes(texts, max_bytes)
    if not texts:
        raise SpringbackError(f"no text in {p}")
    return texts


def _table_texts(p: Path, column: str | None) -> list[str]:
    rows = read_table(str(p))
    names = {canonical(c): c for c in reversed(list(rows[0]))}  # first spelling wins
    if column is not None:
        if column not in rows[0] and canonical(column) not in names:
            raise SpringbackError(f"{p}: no column '{column}' (found: {', '.join(map(str, rows[0]))})")
        col = column if column in rows[0] else names[canonical(column)]
    else:
        col = next((names[c] for c in TEXT_COLUMNS if c in names), None)
    if col is None:
        try:
            return [e.response for e in load_examples(str(p)) if e.response.strip()]
        except SpringbackError as exc:
            raise SpringbackError(
                f"{p}: no text column ({', '.join(TEXT_COLUMNS)}) and no known format to take responses from "
                f"({exc}); name one with column="
            ) from None
    texts = []
    for i, row in enumerate(rows):
        v = row.get(col)
        if v is None:
            continue
        if not isinstance(v, str):
            raise SpringbackError(f"{p}: row {i + 1}: column '{col}' holds {type(v).__name__}, not text")
        if v.strip():
            texts.append(v)
    return texts
