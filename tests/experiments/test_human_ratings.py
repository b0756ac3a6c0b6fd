"""Table 3 from explorer ratings: means per neuron then over neurons, spread, counts, notes."""

from __future__ import annotations

import math

import polars as pl
import pytest

from and_toolkit.experiments.human_ratings import rating_table
from and_toolkit.experiments.paper import TABLE3
from and_toolkit.experiments.qualitative import HumanEvalConfig
from and_toolkit.records import Rating


def _ratings(rows: list[tuple[str, str, int, str, int, str]]) -> pl.DataFrame:
    return Rating.frame([
        {"rating_id": f"{i:032x}", "model": m, "layer": "l", "unit": u, "method": meth,
         "description": "d", "rating": r, "rater": rater, "comment": None,
         "created": "2026-01-01T00:00:00Z"}
        for i, (m, _l, u, meth, r, rater) in enumerate(rows)])


def _cell(df: pl.DataFrame, model: str, method: str, metric: str) -> dict:
    return df.filter((pl.col("model") == model) & (pl.col("group") == method)
                     & (pl.col("metric") == metric)).row(0, named=True)


def test_means_per_neuron_then_over_neurons() -> None:
    # DB: neuron 0 rated 2 and 4 by two raters (mean 3), neuron 1 rated 5 -> mean 4, SD sqrt(2)
    df = rating_table(_ratings([
        ("ast", "l", 0, "DB", 2, "a"), ("ast", "l", 0, "DB", 4, "b"),
        ("ast", "l", 1, "DB", 5, "a"), ("ast", "l", 0, "SUM", 3, "a"),
        ("cnn", "l", 0, "DB", 1, "a")]), HumanEvalConfig(), {"ast": "AST", "cnn": "CNN"})
    db = _cell(df, "ast", "DB", "rating")
    assert db["value"] == pytest.approx(4.0) and db["paper_value"] == TABLE3["DB"].rating
    assert "not the paper's" in db["note"] and "2 rater(s)" in db["note"]
    assert _cell(df, "ast", "DB", "rating_sd")["value"] == pytest.approx(math.sqrt(2.0))
    assert (_cell(df, "ast", "DB", "n_rating")["value"],
            _cell(df, "ast", "DB", "n_ratings")["value"],
            _cell(df, "ast", "DB", "n_raters")["value"]) == (2.0, 3.0, 2.0)
    assert _cell(df, "ast", "SUM", "rating_sd")["value"] is None  # one neuron: no spread
    tab = _cell(df, "ast", "TAB", "rating")
    assert tab["value"] is None and tab["note"].startswith("no ratings")
    assert _cell(df, "ast", "DB", "cos")["value"] is None
    assert _cell(df, "ast", "DB", "cos")["note"].startswith("not run")
    cnn = _cell(df, "cnn", "DB", "rating")
    assert cnn["value"] == 1.0 and cnn["paper_value"] is None  # the paper rated AST neurons
    assert df["key"].n_unique() == df.height


def test_no_ratings_is_refused() -> None:
    with pytest.raises(ValueError, match="no rows"):
        rating_table(Rating.empty(), HumanEvalConfig(), {})
