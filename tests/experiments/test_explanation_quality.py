"""The "Explanation quality" rows: chance bar per layer, shares above it, best / worst neurons."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from and_toolkit.experiments.explanation_quality import best_worst, quality_rows, with_chance
from and_toolkit.records import ExplanationScore, ResultRow


def _score(unit: int, auc: float | None, null: float, layer: str = "fc1", method: str = "DB",
           similarity: str = "cos", source: str = "caption") -> dict[str, Any]:
    return {"model": "m", "layer": layer, "unit": unit, "kind": "closed", "method": method,
            "similarity": similarity, "variant": "", "source": source,
            "description": f"concept {unit}", "encoder": "e", "q": 0.05, "n_heldout": 90,
            "n_positive": 5, "auc": auc, "spearman": 0.1, "null_auc": null,
            "null_spearman": 0.0, "null_unit": 0}


INDEX = pl.DataFrame({"model": ["m"] * 21, "layer": ["fc1"] * 20 + ["head"],
                      "unit": [*range(20), 0], "block": [1] * 20 + [None],
                      "alias": ["block1.fc1"] * 20 + ["classifier"]},
                     schema_overrides={"unit": pl.Int32, "block": pl.Int32})


def test_above_chance_is_above_the_layers_null_95th_percentile() -> None:
    # null AUCs 0.40..0.59 (step 0.01): the 95th percentile (linear) is 0.5805
    rows = [_score(u, 0.5 + 0.02 * u, 0.40 + 0.01 * u) for u in range(20)]
    df = with_chance(ExplanationScore.frame(rows), INDEX)
    assert df["chance_auc"].unique().to_list() == [pytest.approx(0.5805)]
    # AUC 0.5 + 0.02 u > 0.5805 from u = 5 on: 15 of 20 neurons
    assert df["above"].sum() == 15
    res = quality_rows(ExplanationScore.frame(rows), INDEX)
    ResultRow.validate_frame(res, "explanation_scores")
    table = {r["metric"]: r["value"] for r in res.filter(pl.col("x").is_null()).iter_rows(
        named=True)}
    assert table["pct_above_chance"] == pytest.approx(75.0)
    assert table["n_scored"] == 20 and table["median_auc"] == pytest.approx(0.69)
    plotted = res.filter(pl.col("x").is_not_null())
    assert set(plotted["series"]) == {"described", "null"} and set(plotted["x"]) == {1.0}


def test_classifier_plots_after_the_last_block_and_not_run_sides_are_said() -> None:
    rows = [_score(0, 0.9, 0.5, layer="head"), _score(1, 0.7, 0.5)]
    res = quality_rows(ExplanationScore.frame(rows), INDEX, not_run={"audio": "no CLAP"})
    assert set(res.filter(pl.col("x").is_not_null())["x"]) == {1.0, 2.0}
    note = res.filter(pl.col("group") == "audio-side variant")
    assert note["note"].to_list() == ["not run: no CLAP"] and note["value"].is_null().all()


def test_best_and_worst_never_repeat_a_neuron() -> None:
    rows = [_score(u, 0.5 + 0.02 * u, 0.5) for u in range(4)] + [
        _score(0, 0.99, 0.5, source="audio")]
    picked = best_worst(ExplanationScore.frame(rows), INDEX, n=3)
    assert [r["rank"] for r in picked] == ["best 1", "best 2", "best 3", "worst 1"]
    assert [r["neuron"] for r in picked] == ["block1.fc1 #3", "block1.fc1 #2", "block1.fc1 #1",
                                             "block1.fc1 #0"]
    assert picked[0]["AUC"] == pytest.approx(0.56)  # the audio row is not a caption score
