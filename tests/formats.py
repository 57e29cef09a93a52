"""Write small data files the way each publisher ships them (column names, column order,
container, compression, csv quoting), for tests of the loaders.

Every writer takes plain Python values and a path; the path's suffix picks the container where
a publisher ships more than one (``.jsonl``, ``.jsonl.gz``, ``.jsonl.xz``, ``.parquet``).
What each docstring states about a publisher is what their public files show; where a detail
is not known (an escape style, a line ending) the docstring says which choice is made here.

Fixture text that breaks naive loaders: ``NON_ASCII``, ``SEPARATORS`` (U+0085, U+2028,
U+2029: ``str.splitlines`` breaks on them, a "\\n"-splitting reader must not), ``long_text``.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

NON_ASCII = "café — naïve 東京"
NEL, LS, PS = "\u0085", "\u2028", "\u2029"
SEPARATORS = f"one{NEL}two{LS}three{PS}four"  # one line of text with three Unicode "line breaks" inside

_WORDS = ("the", "film", "was", "long", "and", "its", "music", "stayed", "with", "me", "for", "days", "after", "I", "left")


def long_text(n_words: int = 400) -> str:
    """A deterministic text of ``n_words`` words (several hundred: a long prompt or review)."""
    return " ".join(f"{_WORDS[i % len(_WORDS)]}{i // len(_WORDS) if i % 7 == 0 else ''}" for i in range(n_words))


def _open(path: Path, mode: str):
    """Open for writing text, compressing by suffix (.gz, .xz, .bz2) as the publishers do."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8", newline="")
    if suffix == ".xz":
        return lzma.open(path, mode, encoding="utf-8", newline="")
    if suffix == ".bz2":
        return bz2.open(path, mode, encoding="utf-8", newline="")
    return open(path, mode, encoding="utf-8", newline="")


def write_jsonl(path: Path, records: Iterable[dict], ensure_ascii: bool = True) -> Path:
    """JSON Lines: one ``json.dumps`` object per line, "\\n" after each (compressed by suffix)."""
    path = Path(path)
    with _open(path, "wt") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=ensure_ascii) + "\n")
    return path


def _table(path: Path, records: list[dict], ensure_ascii: bool = True) -> Path:
    """Parquet (the hub's converted files, written by pandas/pyarrow) or JSON Lines, by suffix."""
    path = Path(path)
    if path.suffix == ".parquet":
        pd.DataFrame(records).to_parquet(path, index=False)
        return path
    return write_jsonl(path, records, ensure_ascii)


# ----------------------------------------------------------------------------- TruthfulQA


def write_truthfulqa_csv(path: Path, rows: Sequence[dict], best_incorrect: bool = False) -> Path:
    """``TruthfulQA.csv`` of sylinrl/TruthfulQA: ``Type, Category, Question, Best Answer,
    Correct Answers, Incorrect Answers, Source``, answer lists joined by "; ", pandas quoting
    (fields with commas, quotes or newlines quoted, quotes doubled), "\\n" line ends. The 2025
    revision inserts ``Best Incorrect Answer`` after ``Best Answer`` (``best_incorrect=True``).

    ``rows``: dicts with ``question``, ``best_answer``, ``correct_answers`` and
    ``incorrect_answers`` (lists), optional ``best_incorrect_answer``, ``type``, ``category``, ``source``."""
    records = []
    for r in rows:
        rec = {"Type": r.get("type", "Adversarial"), "Category": r.get("category", "Misconceptions"),
               "Question": r["question"], "Best Answer": r["best_answer"]}
        if best_incorrect:
            rec["Best Incorrect Answer"] = r.get("best_incorrect_answer", "")
        rec.update({"Correct Answers": "; ".join(r["correct_answers"]), "Incorrect Answers": "; ".join(r["incorrect_answers"]),
                    "Source": r.get("source", "https://en.wikipedia.org/wiki/List_of_common_misconceptions")})
        records.append(rec)
    pd.DataFrame(records).to_csv(path, index=False)
    return Path(path)


def write_truthfulqa_hub(path: Path, rows: Sequence[dict]) -> Path:
    """The hub's ``truthful_qa`` (``generation`` config): ``type, category, question, best_answer,
    correct_answers, incorrect_answers, source`` with list columns, as parquet."""
    records = [{"type": r.get("type", "Adversarial"), "category": r.get("category", "Misconceptions"),
                "question": r["question"], "best_answer": r["best_answer"],
                "correct_answers": list(r["correct_answers"]), "incorrect_answers": list(r["incorrect_answers"]),
                "source": r.get("source", "https://en.wikipedia.org/wiki/List_of_common_misconceptions")} for r in rows]
    return _table(path, records)


# ----------------------------------------------------------------------------- AdvBench


def write_advbench_csv(path: Path, rows: Sequence[tuple[str, str]]) -> Path:
    """llm-attacks' ``data/advbench/harmful_behaviors.csv``: ``goal,target``, minimal quoting,
    "\\n" line ends. ``rows``: (goal, target) tuples."""
    pd.DataFrame([{"goal": g, "target": t} for g, t in rows]).to_csv(path, index=False)
    return Path(path)


# ----------------------------------------------------------------------------- HH-RLHF


def hh_transcript(turns: Sequence[tuple[str, str]]) -> str:
    """``"\\n\\nHuman: …\\n\\nAssistant: …"`` from (role, text) turns, role ``Human`` or ``Assistant``."""
    return "".join(f"\n\n{role}: {text}" for role, text in turns)


def write_hh_rlhf(path: Path, rows: Sequence[dict]) -> Path:
    """Anthropic/hh-rlhf's ``*/train.jsonl.gz``: gzip JSON Lines of ``{"chosen", "rejected"}``
    whole transcripts. ``rows``: dicts whose ``chosen`` / ``rejected`` are (role, text) turn
    lists. Written with ``json.dumps`` defaults (ASCII escapes; their escape style is not
    checked here — the ``ensure_ascii=False`` case is covered by the PKU / BeaverTails writers)."""
    return write_jsonl(Path(path), [{"chosen": hh_transcript(r["chosen"]), "rejected": hh_transcript(r["rejected"])} for r in rows])


# ----------------------------------------------------------------------------- PKU-SafeRLHF, BeaverTails

# PKU-SafeRLHF's 19 harm categories (PKU-Alignment/PKU-SafeRLHF dataset card).
PKU_HARMS = ("Endangering National Security", "Insulting Behavior", "Discriminatory Behavior", "Endangering Public Health",
             "Copyright Issues", "Violence", "Drugs", "Privacy Violation", "Economic Crime", "Mental Manipulation",
             "Human Trafficking", "Physical Harm", "Sexual Content", "Cybercrime", "Disrupting Public Order",
             "Environmental Damage", "Psychological Harm", "White-Collar Crime", "Animal Abuse")


def write_pku_saferlhf(path: Path, rows: Sequence[dict], version: str = "v1") -> Path:
    """PKU-Alignment/PKU-SafeRLHF ``data/*/train.jsonl`` (or its parquet conversion).

    ``v0`` (2023): ``prompt, response_0, response_1, is_response_0_safe, is_response_1_safe,
    better_response_id, safer_response_id``. ``v1`` (2024) in the published order: ``prompt,
    response_0, response_1, prompt_source, response_0_source, response_1_source,
    is_response_0_safe, is_response_1_safe, response_0_harm_category, response_1_harm_category,
    response_0_severity_level, response_1_severity_level, better_response_id, safer_response_id,
    response_0_sha256, response_1_sha256``; harm categories are dicts of bools. JSON Lines are
    written with ``ensure_ascii=False`` (raw non-ASCII, U+2028 included).

    ``rows``: dicts with ``prompt``, ``responses`` (2 texts), ``safe`` (2 bools), ``better``, ``safer`` (0/1)."""
    import hashlib

    records = []
    for r in rows:
        (r0, r1), (s0, s1) = r["responses"], r["safe"]
        if version == "v0":
            rec = {"prompt": r["prompt"], "response_0": r0, "response_1": r1, "is_response_0_safe": s0,
                   "is_response_1_safe": s1, "better_response_id": r["better"], "safer_response_id": r["safer"]}
        else:
            harm = lambda safe: {h: (not safe and h == "Violence") for h in PKU_HARMS}  # noqa: E731
            rec = {"prompt": r["prompt"], "response_0": r0, "response_1": r1, "prompt_source": "Crowdsourced",
                   "response_0_source": "Alpaca-7B", "response_1_source": "Alpaca-7B",
                   "is_response_0_safe": s0, "is_response_1_safe": s1,
                   "response_0_harm_category": harm(s0), "response_1_harm_category": harm(s1),
                   "response_0_severity_level": 0 if s0 else 2, "response_1_severity_level": 0 if s1 else 2,
                   "better_response_id": r["better"], "safer_response_id": r["safer"],
                   "response_0_sha256": hashlib.sha256(r0.encode()).hexdigest(),
                   "response_1_sha256": hashlib.sha256(r1.encode()).hexdigest()}
        records.append(rec)
    return _table(path, records, ensure_ascii=False)


# BeaverTails' 14 harm categories, the keys of its ``category`` dict (PKU-Alignment/BeaverTails card).
BEAVERTAILS_HARMS = ("animal_abuse", "child_abuse", "controversial_topics,politics", "discrimination,stereotype,injustice",
                     "drug_abuse,weapons,banned_substance", "financial_crime,property_crime,theft",
                     "hate_speech,offensive_language", "misinformation_regarding_ethics,laws_and_safety",
                     "non_violent_unethical_behavior", "privacy_violation", "self_harm",
                     "sexually_explicit,adult_content", "terrorism,organized_crime",
                     "violence,aiding_and_abetting,incitement")


def write_beavertails(path: Path, rows: Sequence[tuple[str, str, bool]]) -> Path:
    """PKU-Alignment/BeaverTails ``round0/330k/train.jsonl.xz`` (``30k``: ``.jsonl.gz``) or its
    parquet conversion: ``prompt, response, category, is_safe`` with ``category`` a dict of the
    14 harm names -> bool. ``rows``: (prompt, response, is_safe); written ``ensure_ascii=False``."""
    records = [{"prompt": p, "response": r, "category": {h: (not safe and h == "privacy_violation") for h in BEAVERTAILS_HARMS},
                "is_safe": safe} for p, r, safe in rows]
    return _table(path, records, ensure_ascii=False)


# ----------------------------------------------------------------------------- Alpaca


def write_alpaca_json(path: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    """tatsu-lab/stanford_alpaca's ``alpaca_data.json``: one JSON array of ``{"instruction",
    "input", "output"}`` objects, ``json.dump(..., indent=4)`` (their ``utils.jdump``; ASCII
    escapes). ``rows``: (instruction, input, output)."""
    data = [{"instruction": i, "input": x, "output": o} for i, x, o in rows]
    Path(path).write_text(json.dumps(data, indent=4), encoding="utf-8")
    return Path(path)


def write_alpaca_hub(path: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    """The hub's ``tatsu-lab/alpaca`` parquet: ``instruction, input, output, text``; ``text`` is the
    whole formatted training example (here an abbreviated form of their prompt layout)."""
    def text(i: str, x: str, o: str) -> str:
        head = f"### Instruction:\n{i}\n\n" + (f"### Input:\n{x}\n\n" if x else "")
        return head + f"### Response:\n{o}"

    records = [{"instruction": i, "input": x, "output": o, "text": text(i, x, o)} for i, x, o in rows]
    pd.DataFrame(records).to_parquet(path, index=False)
    return Path(path)


# ----------------------------------------------------------------------------- IMDb


def write_imdb_hub(path: Path, rows: Sequence[tuple[str, int]]) -> Path:
    """The hub's ``stanfordnlp/imdb`` parquet: ``text`` (reviews with their ``<br />`` tags),
    ``label`` int64 (1 = positive, 0 = negative, -1 in the ``unsupervised`` split)."""
    pd.DataFrame([{"text": t, "label": int(y)} for t, y in rows]).to_parquet(path, index=False)
    return Path(path)


def write_imdb_kaggle_csv(path: Path, rows: Sequence[tuple[str, str]], line_end: str = "\n") -> Path:
    """Kaggle's "IMDB Dataset of 50K Movie Reviews" ``IMDB Dataset.csv``: ``review,sentiment``
    ("positive"/"negative"), minimal quoting. Its line ending is not known here: ``line_end``
    picks it ("\\r\\n" is what Python's ``csv`` module writes by default)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator=line_end)
        w.writerow(["review", "sentiment"])
        w.writerows(rows)
    return Path(path)


# ----------------------------------------------------------------------------- plain text


def write_lines(path: Path, lines: Sequence[str], line_end: str = "\n") -> Path:
    """A plain text file, one text per line, each ended by ``line_end``."""
    Path(path).write_bytes("".join(line + line_end for line in lines).encode("utf-8"))
    return Path(path)


def rename_column(src: Path, dst: Path, old: str, new: str) -> Path:
    """A copy of a table with one column renamed, written as parquet or JSON Lines by ``dst``'s suffix."""
    from springback.data import read_table

    rows: list[dict[str, Any]] = [{(new if k == old else k): v for k, v in r.items()} for r in read_table(str(src))]
    return _table(Path(dst), rows, ensure_ascii=False)
