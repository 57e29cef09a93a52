"""Real-data loading: every file format, the paper's adapters, column mapping, templates,
label filtering, the DataWorld streams, and one clear error per bad input. No models."""

from __future__ import annotations

import pytest

from hf_tiny import imdb_rows, safety_rows, write
from springback.data import DataConfig, DataWorld, TEMPLATES, load_examples, read_table
from springback.errors import SpringbackError
from springback.worlds.base import ALIGNED, OPPOSING


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_rows(tmp_path, suffix):
    rows = imdb_rows(6)
    path = write(rows, tmp_path / f"reviews{suffix}")
    got = read_table(str(path))
    assert [r["text"] for r in got] == [r["text"] for r in rows]
    assert [int(r["label"]) for r in got] == [r["label"] for r in rows]
    ex = load_examples(str(path), "imdb", prefix_words=3, max_words=4)
    assert len(ex) == 6
    # Prompt = first 3 words (raw template), response = the next 4 words with a leading space.
    words = rows[0]["text"].split()
    assert ex[0].prompt == " ".join(words[:3])
    assert ex[0].response == " " + " ".join(words[3:7])
    assert [e.label for e in ex[:2]] == [ALIGNED, OPPOSING]


def test_auto_detection_and_label_filter(tmp_path):
    path = write(safety_rows(6), tmp_path / "bt.jsonl")
    safe = load_examples(str(path), label="aligned")
    unsafe = load_examples(str(path), label="opposing")
    assert len(safe) == 3 and len(unsafe) == 3
    assert all("sorry" in e.response for e in safe) and all("sure" in e.response for e in unsafe)
    # BeaverTails uses the paper's conversation template by default [SPEC §3.2].
    assert safe[0].prompt == TEMPLATES["conversation"].replace("{input}", safety_rows(6)[0]["prompt"])
    assert safe[0].prompt.startswith("BEGINNING OF CONVERSATION: USER: how do i") and safe[0].prompt.endswith("ASSISTANT:")


def test_alpaca_truthfulqa_and_custom_template(tmp_path):
    alp = write([{"instruction": "fix the door", "input": "now", "output": "done ."}], tmp_path / "a.json")
    ex = load_examples(str(alp), template="Q: {input} A:")
    assert ex[0].prompt == "Q: fix the door\nnow A:" and ex[0].response == "done ." and ex[0].label == ALIGNED
    tqa = write([{"question": "is it red ?", "best_answer": "yes", "incorrect_answers": "no; maybe"}], tmp_path / "t.csv")
    ex = load_examples(str(tqa), "truthfulqa", template="raw")
    assert [(e.response, e.label) for e in ex] == [("yes", ALIGNED), ("no", OPPOSING)]
    # List columns (as the hub's TruthfulQA has) survive a parquet round trip.
    tqa = write([{"question": "is it red ?", "correct_answers": ["yes", "sure"], "incorrect_answers": ["no"]}],
                tmp_path / "t.parquet")
    ex = load_examples(str(tqa), "truthfulqa", template="raw")
    assert [(e.response, e.label) for e in ex] == [("yes", ALIGNED), ("no", OPPOSING)]


def test_column_mapping(tmp_path):
    rows = [{"question": f"q{i} ?", "answer": f"a{i}"} for i in range(3)]
    path = write(rows, tmp_path / "qa.parquet")
    ex = load_examples(str(path), "pairs", columns={"prompt": "question", "response": "answer"}, template="raw")
    assert [(e.prompt, e.response) for e in ex] == [("q0 ?", "a0"), ("q1 ?", "a1"), ("q2 ?", "a2")]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "absent.jsonl", "not found"),
        (lambda d: write([{"text": "a b c d e f g h i j"}], d / "nolabel.csv"), "missing column"),
        (lambda d: (d / "empty.json").write_text("[]") and d / "empty.json", "empty"),
        (lambda d: (d / "header.csv").write_text("text,label\n") and d / "header.csv", "empty"),
        (lambda d: (d / "bad.jsonl").write_text('{"text": 1\n') and d / "bad.jsonl", "malformed JSON"),
        (lambda d: (d / "x.txt").write_text("hi") and d / "x.txt", "unsupported data file"),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(SpringbackError, match=match) as info:
        load_examples(str(path), "imdb")
    assert "\n" not in str(info.value)


def test_mapping_to_missing_column_and_no_examples(tmp_path):
    path = write(imdb_rows(4), tmp_path / "r.jsonl")
    with pytest.raises(SpringbackError, match="missing column"):
        load_examples(str(path), "pairs", columns={"prompt": "title", "response": "text"})
    with pytest.raises(SpringbackError, match="no .*examples"):
        load_examples(str(path), "imdb", prefix_words=100)  # every review shorter than the prefix


def test_hub_name_offline_fails_fast(monkeypatch):
    import springback.models as models

    monkeypatch.setattr(models, "hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(SpringbackError, match="hub is not reachable"):
        read_table("stanfordnlp/imdb-does-not-exist")


def test_data_world_streams_eval_and_references(tmp_path):
    train = write(imdb_rows(40, seed=1), tmp_path / "train.jsonl")
    ev = write(imdb_rows(12, seed=2), tmp_path / "eval.csv")
    world = DataWorld(DataConfig(aligned=str(train), eval=str(ev), prefix_words=4, n_reference=3))
    a8, a5 = world.aligned(8, seed=0), world.aligned(5, seed=0)
    assert a8[:5] == a5  # a longer stream extends a shorter one (constant-lr trick of the rebound protocol)
    assert world.aligned(8, seed=1) != a8
    assert all(e.label == ALIGNED for e in a8) and all(e.label == OPPOSING for e in world.opposing(8, 0))
    assert world.format == "imdb" and world.sentiment_like
    prompts = world.eval_prompts(4)
    assert len(set(prompts)) == 4 and all(len(p.split()) == 4 for p in prompts)
    a, n = world.reference_sets()
    assert len(a) == 3 and len(n) == 3 and not set(a) & set(n)
    with pytest.raises(SpringbackError, match="asked for 100 aligned"):
        world.aligned(100, 0)
    # As a pipeline source, IMDb falls back to VADER (offline); its labels agree with the review's sentiment words.
    from springback.pipeline import build_source, data_spec

    source = build_source(data_spec(world.cfg))
    labels = source.label_batch([" the story was great and lovely", " the acting was awful and boring"])
    assert labels == [ALIGNED, OPPOSING]
    row = source.score_samples([" great", " awful", " superb"])
    assert row["score"] == row["score_vader"] and row["aligned_rate_vader"] == pytest.approx(2 / 3)


def test_data_world_needs_eval_file_for_local_data(tmp_path):
    train = write(imdb_rows(10), tmp_path / "train.jsonl")
    with pytest.raises(SpringbackError, match="data.eval"):
        DataWorld(DataConfig(aligned=str(train))).eval_prompts(2)
