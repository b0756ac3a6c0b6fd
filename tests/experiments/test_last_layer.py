"""Table 7 / Table 2 on a hand-made 6-class classifier layer with hand-computed scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pytest

from and_toolkit.experiments.last_layer import (
    LastLayerConfig,
    last_layer_scores,
    table2,
    table7,
)
from and_toolkit.experiments.paper import SIMILARITIES, TABLE7
from and_toolkit.records import ConceptSet, ResultRow

CLASSES = ["dog", "rooster", "pig", "cow", "frog", "cat"]
FC = "classifier.dense"


def ranked_rows(method: str, sim: str, rankings: Sequence[Sequence[str]],
                layer: str = FC) -> list[dict[str, Any]]:
    return [{"model": "toy", "layer": layer, "unit": u, "method": method, "similarity": sim,
             "concept": c, "kind": "closed", "rank": r, "score": float(-r), "pos": None,
             "verdict": "kept"}
            for u, ranking in enumerate(rankings) for r, c in enumerate(ranking)]


def gt_at(positions: Sequence[int]) -> list[list[str]]:
    """Rankings of all 6 classes in which unit j's class sits at rank positions[j]."""
    out = []
    for j, p in enumerate(positions):
        others = [c for c in CLASSES if c != CLASSES[j]]
        out.append(others[:p] + [CLASSES[j]] + others[p:])
    return out


def toy_cos(preds: Sequence[str | tuple[str, str]], gts: Sequence[str]) -> np.ndarray:
    """1 if the prediction is the class, 0.5 otherwise, 0.25 for a (pair) tuple."""
    return np.array([0.25 if isinstance(p, tuple) else 1.0 if p == g else 0.5
                     for p, g in zip(preds, gts, strict=True)])


@pytest.fixture
def concepts() -> pl.DataFrame:
    rows = (ranked_rows("DB", "cos_cubed", gt_at([0, 0, 0, 0, 2, 5]))   # 4/6, 5/6
            + ranked_rows("DB", "cos", gt_at([1] * 6))                   # 0/6, 6/6
            + ranked_rows("DB", "wpmi", gt_at([0] * 6))                  # 6/6, 6/6
            + ranked_rows("TAB", "cos", gt_at([0, 0, 0, 0, 1, 5]))       # 4/6, 5/6
            + ranked_rows("TAB", "cos_cubed", gt_at([0, 0, 0, 0, 1, 2]))  # 4/6, 6/6
            + ranked_rows("DB", "cos_cubed", gt_at([5] * 6), layer="blocks.0.fc1"))  # ignored
    return ConceptSet.frame(rows)


def values(df: pl.DataFrame, group: str, series: str) -> dict[str, float | None]:
    sub = df.filter((pl.col("group") == group) & (pl.col("series") == series))
    return dict(zip(sub["metric"].to_list(), sub["value"].to_list(), strict=True))


def test_scores_by_hand() -> None:
    preds = gt_at([0, 0, 0, 0, 2, 5])
    s = last_layer_scores(preds, preds, CLASSES, toy_cos)
    assert s["top1"] == pytest.approx(100 * 4 / 6)
    assert s["top5"] == pytest.approx(100 * 5 / 6)
    assert s["cos"] == pytest.approx((4 * 1.0 + 2 * 0.5) / 6)
    pair = last_layer_scores(preds, preds, CLASSES, toy_cos, pair_cos=True)
    assert pair["cos"] == pytest.approx(0.25) and pair["top1"] == s["top1"]


def test_table7_cells_not_run_and_paper_values(concepts: pl.DataFrame) -> None:
    cfg = LastLayerConfig(model="toy", layer=FC, paper_model="AST")
    t7 = table7(concepts, CLASSES, toy_cos, cfg,
                not_run={"ICL": "no LLM", "DB/rank_reorder": "5 clips", "DB/soft_wpmi": "x",
                         "TAB/rank_reorder": "x", "TAB/wpmi": "x", "TAB/soft_wpmi": "x"})
    ResultRow.validate_frame(t7, "table7")
    assert t7["key"].n_unique() == t7.height == 3 * (1 + 5 + 5)
    db = values(t7, "DB", "cos_cubed")
    assert db["top1"] == pytest.approx(66.6667, abs=1e-3)
    assert db["top5"] == pytest.approx(83.3333, abs=1e-3)
    assert db["cos"] == pytest.approx(5 / 6)
    assert values(t7, "DB", "cos") == pytest.approx({"top1": 0.0, "top5": 100.0, "cos": 0.5})
    assert values(t7, "DB", "wpmi") == pytest.approx({"top1": 100.0, "top5": 100.0, "cos": 1.0})
    icl = t7.filter(pl.col("group") == "ICL")
    assert icl["value"].is_null().all() and set(icl["note"]) == {"not run: no LLM"}
    assert icl.filter(pl.col("metric") == "top1")["paper_value"].item() == 72.0
    paper = t7.filter((pl.col("group") == "DB") & (pl.col("series") == "cos_cubed"))
    assert paper.sort("metric")["paper_value"].to_list() == [1.0, 100.0, 100.0]  # cos,top1,top5


def test_table2_best_of(concepts: pl.DataFrame) -> None:
    cfg = LastLayerConfig(model="toy", layer=FC, methods=("TAB", "DB"), paper_model="AST")
    nr = {"DB/rank_reorder": "r", "DB/soft_wpmi": "r", "TAB/rank_reorder": "r",
          "TAB/wpmi": "r", "TAB/soft_wpmi": "r"}
    t2 = table2(table7(concepts, CLASSES, toy_cos, cfg, not_run=nr), cfg)
    ResultRow.validate_frame(t2, "table2")
    by = {(g, m): (s, v, p) for g, s, m, v, p in
          t2.select("group", "series", "metric", "value", "paper_value").iter_rows()}
    assert by[("DB", "top1")][:2] == ("wpmi", 100.0)
    # TAB: cos and cos_cubed tie on top-1 (4/6); cos_cubed wins on top-5 (6/6 vs 5/6)
    assert by[("TAB", "top1")][0] == "cos_cubed"
    assert by[("TAB", "top5")][1] == pytest.approx(100.0)
    assert by[("TAB", "top1")][2] == 96.0 and by[("DB", "cos")][2] == 1.0


def test_table2_full_tie_takes_first_similarity_and_not_run() -> None:
    cfg = LastLayerConfig(model="toy", layer=FC, methods=("DB", "ICL"))
    rows = []
    for sim in ("cos_cubed", "wpmi"):
        for metric, v in (("top1", 80.0), ("top5", 90.0), ("cos", 0.9)):
            rows.append({"experiment": "table7", "key": f"{sim}/{metric}", "model": "toy",
                         "group": "DB", "series": sim, "x": None, "metric": metric, "value": v,
                         "paper_value": None, "note": ""})
    for metric in ("top1", "top5", "cos"):
        rows.append({"experiment": "table7", "key": f"icl/{metric}", "model": "toy",
                     "group": "ICL", "series": "", "x": None, "metric": metric, "value": None,
                     "paper_value": None, "note": "not run: no LLM"})
    t2 = table2(ResultRow.frame(rows), cfg)
    assert set(t2.filter(pl.col("group") == "DB")["series"]) == {"cos_cubed"}
    icl = t2.filter(pl.col("group") == "ICL")
    assert icl["value"].is_null().all() and set(icl["note"]) == {"not run: no LLM"}


def test_tab_pair_cos_compat(concepts: pl.DataFrame) -> None:
    cfg = LastLayerConfig.reference(model="toy", layer=FC, methods=("TAB", "DB"),
                                    similarities=("cos_cubed",))
    t7 = table7(concepts, CLASSES, toy_cos, cfg)
    assert values(t7, "TAB", "cos_cubed")["cos"] == pytest.approx(0.25)   # pair-encoded
    assert values(t7, "DB", "cos_cubed")["cos"] == pytest.approx(5 / 6)   # DB unaffected


def test_icl_separate_top5_run() -> None:
    rows = (ranked_rows("ICL", "top1", [[c] for c in ["pig", *CLASSES[1:]]])
            + ranked_rows("ICL", "top5", gt_at([0, 1, 2, 3, 4, 5])))
    cfg = LastLayerConfig(model="toy", layer=FC, methods=("ICL",), icl_top1_similarity="top1",
                          icl_top5_similarity="top5")
    t7 = table7(ConceptSet.frame(rows), CLASSES, toy_cos, cfg)
    v = values(t7, "ICL", "")
    assert v["top1"] == pytest.approx(500 / 6) and v["top5"] == pytest.approx(500 / 6)


def test_unknown_names_missing_units_and_missing_cells(concepts: pl.DataFrame) -> None:
    cfg = LastLayerConfig(model="toy", layer=FC, methods=("DB",), similarities=("cos_cubed",))
    renamed = concepts.with_columns(pl.col("concept").replace({"cow": "cows", "cat": "kitty"}))
    with pytest.raises(ValueError, match=r"\['cows', 'kitty'\]"):
        table7(renamed, CLASSES, toy_cos, cfg)
    with pytest.raises(ValueError, match=r"no prediction for units \[5\]"):
        table7(concepts.filter(pl.col("unit") != 5), CLASSES, toy_cos, cfg)
    with pytest.raises(ValueError, match="not_run"):
        table7(concepts, CLASSES, toy_cos, cfg.model_copy(update={"similarities": ("wpmi",),
                                                                   "methods": ("TAB",)}))
    with pytest.raises(ValueError, match="unique"):
        table7(concepts, [*CLASSES, "dog"], toy_cos, cfg)


@pytest.mark.parametrize("paper_model", ["AST", "BEATs-finetuned", "BEATs-frozen"])
def test_best_of_rule_reproduces_paper_table2(paper_model: str) -> None:
    """Applied to the paper's Table 7, the best-of rule gives the paper's Table 2."""
    cfg = LastLayerConfig(model="m", layer=FC, methods=("TAB", "DB"),
                          paper_model=paper_model)  # type: ignore[arg-type]
    rows = [{"experiment": "table7", "key": f"{meth}/{sim}/{metric}", "model": "m",
             "group": meth, "series": sim, "x": None, "metric": metric,
             "value": getattr(TABLE7[(paper_model, meth, sim)], metric),  # type: ignore[index]
             "paper_value": None, "note": ""}
            for meth in ("TAB", "DB") for sim in SIMILARITIES for metric in ("top1", "top5", "cos")]
    t2 = table2(ResultRow.frame(rows), cfg)
    assert t2["value"].to_list() == t2["paper_value"].to_list()
