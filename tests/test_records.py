"""The records schema: rows outside it are refused, and docs/records.md is generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from springback.pipeline.records import COLUMNS, PATTERNS, check_rows, column_type, markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "records.md"


def test_docs_list_exactly_the_schema():
    text = DOC.read_text()
    assert text.endswith(markdown()), "docs/records.md is stale: regenerate its table from springback.pipeline.records"
    for name in COLUMNS:
        assert f"| `{name}` |" in text


def test_unknown_columns_and_wrong_types_are_refused():
    check_rows([{"experiment": "rebound", "seed": 0, "score_S": 1.5, "n_opposing": 8, "score_vader": 0.1,
                 "agree_refusal~vader": 0.5, "gamma_p_task": 0.2, "bisect": False, "curve_loss": [1.0]}])
    check_rows([{"score_S": None, "pi_pos": float("nan")}])  # missing values are allowed anywhere
    with pytest.raises(ValueError, match="not in the schema"):
        check_rows([{"n_neg": 8}])  # an old name: the schema says n_opposing
    with pytest.raises(ValueError, match="expects int"):
        check_rows([{"seed": "0"}])
    with pytest.raises(ValueError, match="expects int"):
        check_rows([{"seed": True}])  # a bool is not a seed
    assert column_type("score_cost") == column_type("score") and column_type("gamma_x") is None
    assert all(p.startswith(("score_", "aligned_rate_", "agree_", "kappa_", "gamma_", "bits_per_token_")) for p in PATTERNS)


def test_every_experiment_writes_only_schema_columns(tiny_rebound_run):
    """A real run's rows pass the check (the runner checks on commit; this reads them back)."""
    import springback

    df = springback.load_results(tiny_rebound_run)
    check_rows(df.to_dict("records"))
    assert {"experiment", "world", "model", "seed", "stage", "n_examples", "n_aligned", "n_opposing"} <= set(df.columns)
