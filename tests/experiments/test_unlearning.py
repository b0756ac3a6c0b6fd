"""Table 4 / Fig 10 on a 3-class toy whose evaluate() is a hand-written function of the mask."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import polars as pl
import pytest

from and_toolkit.experiments.masks import compat_row_order, evaluate_masks, mask_from_units
from and_toolkit.experiments.ocp import match_nouns, ocp_matches, simple_lemma
from and_toolkit.experiments.paper import TABLE4
from and_toolkit.experiments.unlearning import (
    UnlearningConfig,
    fig10,
    select_masks,
    split_table4,
    table4,
)
from and_toolkit.records import ConceptSet, ProbeClip, ResultRow

CLASSES = ["dog", "water_drops", "pouring_water"]
SIZES = {"h": 4, "fc": 3}
# Pruning hidden unit u adds EFFECT[u] to every clip's logits (columns = classes).
EFFECT = np.array([[-2.0, 0, 0], [0, -3, 0], [0, -1, -1], [-5, -5, -5]])
TARGETS = np.array([0, 0, 1, 1, 2, 2])


def clips() -> pl.DataFrame:
    return ProbeClip.frame([
        {"dataset": "toy", "clip_id": f"c{i}", "index": i, "path": "", "label": CLASSES[t],
         "target": int(t), "fold": 1, "sample_rate": 16000, "n_samples": 16000}
        for i, t in enumerate(TARGETS)])


class Evaluator:
    """Base logits: 1 on the own class, 0 elsewhere; each pruned unit adds its EFFECT row."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, mask: Mapping[str, np.ndarray]) -> np.ndarray:
        assert set(mask) == {"h"}  # classifier never in the mask
        pruned = np.flatnonzero(mask["h"])
        self.calls.append(pruned.tolist())
        logits = np.eye(3)[TARGETS]
        return logits + EFFECT[pruned].sum(axis=0)


def open_row(unit: int, word: str, pos: str = "NOUN", verdict: str = "kept",
             layer: str = "h") -> dict[str, Any]:
    return {"model": "toy", "layer": layer, "unit": unit, "method": "OCP", "similarity": "",
            "concept": word, "kind": "open", "rank": 0, "score": None, "pos": pos,
            "verdict": verdict}


def closed_rows(method: str, sim: str, rankings: dict[int, list[str]],
                layer: str = "h") -> list[dict[str, Any]]:
    return [{"model": "toy", "layer": layer, "unit": u, "method": method, "similarity": sim,
             "concept": c, "kind": "closed", "rank": r, "score": 1.0 - r, "pos": None,
             "verdict": "kept"} for u, rk in rankings.items() for r, c in enumerate(rk)]


def concepts() -> pl.DataFrame:
    rows = [open_row(0, "dog"), open_row(1, "drops"), open_row(1, "water"), open_row(2, "water"),
            open_row(3, "sound"), open_row(3, "dog", verdict="dropped:stopword"),
            open_row(3, "dog", pos="ADJ", layer="fc"),  # classifier: ignored
            open_row(3, "loud", pos="ADJ")]
    rows += closed_rows("DB", "cos_cubed", {0: ["dog", "pouring_water", "water_drops"],
                                            1: ["water_drops", "dog", "pouring_water"],
                                            2: ["pouring_water", "water_drops", "dog"],
                                            3: ["dog", "water_drops", "pouring_water"]})
    rows += closed_rows("DB", "cos_cubed", {0: ["dog", "pig", "cat"]}, layer="fc")  # ignored
    return ConceptSet.frame(rows)


def summary(df: pl.DataFrame, strategy: str, count: str = "natural_count") -> dict[str, float]:
    sub = df.filter((pl.col("group") == strategy) & (pl.col("series") == count))
    return dict(zip(sub["metric"].to_list(), sub["value"].to_list(), strict=True))


def summary_note(df: pl.DataFrame, strategy: str, count: str = "natural_count") -> str:
    notes = df.filter((pl.col("group") == strategy) & (pl.col("series") == count))["note"]
    assert notes.n_unique() == 1
    return str(notes[0])


def test_paper_gap_is_r_minus_a_in_all_12_cells() -> None:
    """The paper's column headed "ΔA−ΔR" equals ΔR − ΔA in every cell (three 2-decimal
    roundings: |error| <= 3 * 0.005)."""
    assert len(TABLE4) == 12
    for key, cell in TABLE4.items():
        assert cell.r_minus_a == pytest.approx(cell.delta_r - cell.delta_a, abs=0.015), key
    # and not ΔA − ΔR wherever the two differ by more than the rounding
    wrong = [k for k, c in TABLE4.items() if abs(c.r_minus_a - (c.delta_a - c.delta_r)) > 0.015]
    assert len(wrong) == sum(abs(c.delta_a - c.delta_r) > 0.0075 for c in TABLE4.values())
    assert TABLE4[("AST", "OCP")].r_minus_a == 3.90


def test_ocp_matching_token_vs_substring() -> None:
    assert ocp_matches("use", "mouse_click", "substring")
    assert not ocp_matches("use", "mouse_click", "token")
    assert ocp_matches("rain", "train", "substring") and not ocp_matches("rain", "train", "token")
    assert ocp_matches("rain", "rain", "token") and ocp_matches("Mouse", "mouse_click", "token")
    assert ocp_matches("bird", "chirping_birds", "lemma")
    assert not ocp_matches("bird", "chirping_birds", "token")
    assert simple_lemma("glasses") == "glass" and simple_lemma("bus") == "bus"


def test_ocp_selection_on_masks() -> None:
    names = ["mouse_click", "train", "rain"]
    df = ConceptSet.frame([open_row(0, "use"), open_row(1, "rain"), open_row(2, "mouse")])
    hidden = {"h": 3}
    cases: list[tuple[Literal["token", "substring"], dict[str, list[int]]]] = [
        ("token", {"mouse_click": [2], "train": [], "rain": [1]}),
        ("substring", {"mouse_click": [0, 2], "train": [1], "rain": [1]})]
    for match, expected in cases:
        cfg = UnlearningConfig(model="toy", classifier_layer="fc", ocp_match=match)
        got = select_masks("OCP", df, hidden, names, names, cfg)
        assert {c: np.flatnonzero(m["h"]).tolist() for c, m in got.items()} == expected


def test_table4_by_hand() -> None:
    ev = Evaluator()
    cfg = UnlearningConfig(model="toy", classifier_layer="fc", strategies=("OCP", "TAB"),
                           paper_model="AST")
    df = table4(concepts(), SIZES, CLASSES, clips(), ev, cfg, not_run={"TAB": "no CLAP"})
    ResultRow.validate_frame(df, "table4")
    s = summary(df, "OCP")
    # dog prunes {0}: own-logit changes [-2, 0, 0] -> a=-2, r=0
    # water_drops / pouring_water prune {1, 2}: changes [0, -4, -1] -> a=-4, r=-0.5 / a=-1, r=-2
    assert s["delta_a"] == pytest.approx(-7 / 3)
    assert s["delta_r"] == pytest.approx(-2.5 / 3)
    assert s["r_minus_a"] == pytest.approx(1.5)  # ΔR − ΔA: the target drops more
    assert s["r_minus_a_per_100"] == pytest.approx(100 * 1.5 / (5 / 3))
    # per-class r_c − a_c = 2, 3.5, -1: standard error of their mean
    assert s["r_minus_a_se"] == pytest.approx(np.std([2, 3.5, -1], ddof=1) / np.sqrt(3))
    assert s["classes_pruned"] == 3
    assert s["avg_pruned"] == pytest.approx(5 / 3)
    assert s["acc_before"] == 1.0
    assert s["acc_after"] == pytest.approx((4 / 6 + 2 / 6 + 2 / 6) / 3)
    per = df.filter((pl.col("series") == "water_drops") & (pl.col("group") == "OCP")
                    & ~pl.col("metric").str.ends_with("_matched"))
    assert dict(zip(per["metric"], per["value"], strict=True)) == pytest.approx(
        {"n_pruned": 2.0, "a_c": -4.0, "r_c": -0.5, "acc_after": 2 / 6})
    assert "match=token" in summary_note(df, "OCP")
    n_row = per.filter(pl.col("metric") == "n_pruned")
    assert "matched nouns: drops, water" in n_row["note"].item()
    assert df.filter((pl.col("group") == "OCP") & (pl.col("metric") == "delta_a")
                     & (pl.col("series") == "natural_count"))["paper_value"].item() == -10.73
    tab = df.filter(pl.col("group") == "TAB")
    assert set(tab["series"]) == {"natural_count", "matched_count"}
    assert tab["value"].is_null().all() and set(tab["note"]) == {"not run: no CLAP"}
    # baseline once + 2 distinct masks ({0} and {1, 2}); the repeated {1, 2} is not re-run
    assert sorted(map(tuple, ev.calls)) == [(), (0,), (1, 2)]


def test_db_top3_sums_to_three_times_hidden() -> None:
    cfg = UnlearningConfig(model="toy", classifier_layer="fc", strategies=("DB",))
    masks = select_masks("DB", concepts(), {"h": 4}, CLASSES, CLASSES, cfg)
    assert sum(int(m["h"].sum()) for m in masks.values()) == 3 * 4
    df = table4(concepts(), SIZES, CLASSES, clips(), Evaluator(), cfg)
    assert summary(df, "DB")["avg_pruned"] == pytest.approx(4.0)  # 3 * 4 / 3 classes


def test_random_unpruned_baseline_and_compat() -> None:
    # random.Random(20).shuffle of [h0, h1, h2, h3] -> [h2, h0, h3, h1]; first 2 = {0, 2}
    cfg = UnlearningConfig(model="toy", classifier_layer="fc", strategies=("Random",),
                           random_count=2)
    ev = Evaluator()
    s = summary(table4(concepts(), SIZES, CLASSES, clips(), ev, cfg), "Random")
    assert sorted(map(tuple, ev.calls)) == [(), (0, 2)]  # one mask shared by all classes
    # changes [-2, -1, -1]: a = mean(-2, -1, -1); r_c = mean of the other two
    assert s["delta_a"] == pytest.approx(-4 / 3)
    assert s["delta_r"] == pytest.approx(((-1 - 1) / 2 + (-2 - 1) / 2 + (-2 - 1) / 2) / 3)
    assert s["avg_pruned"] == 2.0
    ref = UnlearningConfig.reference(model="toy", classifier_layer="fc", strategies=("Random",),
                                     random_count=2)
    ev = Evaluator()
    s = summary(table4(concepts(), SIZES, CLASSES, clips(), ev, ref), "Random")
    assert s["delta_a"] == 0.0 and s["delta_r"] == 0.0
    assert [0, 1] in ev.calls  # row-order compat prunes units 0..k-1


def test_mask_helpers() -> None:
    m = mask_from_units({"a": 5, "b": 3}, ["a", "a", "b"], [4, 1, 2])
    assert np.flatnonzero(compat_row_order(m)["a"]).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"units \[7\] outside layer 'b'"):
        mask_from_units({"a": 5, "b": 3}, ["b"], [7])
    with pytest.raises(ValueError, match="'zz' is not a hidden layer"):
        mask_from_units({"a": 5}, ["zz"], [0])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_masks([m], lambda _: np.full((2, 2), np.nan))


def test_fig10_sorted_by_change() -> None:
    cfg = UnlearningConfig(model="toy", classifier_layer="fc")
    df = fig10(concepts(), SIZES, CLASSES, clips(), Evaluator(), cfg)
    ResultRow.validate_frame(df, "fig10")
    ch = df.filter(pl.col("metric") == "change").sort("x")
    assert ch["series"].to_list() == ["water_drops", "pouring_water", "dog"]
    assert ch["value"].to_list() == [-4.0, -1.0, 0.0]
    before = df.filter(pl.col("metric") == "own_logit_before")["value"].to_list()
    assert before == [1.0, 1.0, 1.0]
    assert df.filter(pl.col("metric") == "n_pruned")["value"].item() == 2.0


def test_fig10_draws_nothing_when_nothing_is_pruned() -> None:
    cfg = UnlearningConfig(model="toy", classifier_layer="fc", fig10_target="dog")
    no_dog = concepts().filter(pl.col("concept") != "dog")
    ev = Evaluator()
    df = fig10(no_dog, SIZES, CLASSES, clips(), ev, cfg)
    assert df.height == 1 and df["value"].item() == 0.0 and df["x"].is_null().all()
    assert "prunes nothing" in df["note"].item() and ev.calls == []


def test_unknown_names_raise() -> None:
    bad = concepts().with_columns(pl.col("concept").replace({"pouring_water": "pour"}))
    cfg = UnlearningConfig(model="toy", classifier_layer="fc", strategies=("DB",))
    with pytest.raises(ValueError, match=r"not among the class names: \['pour'\]"):
        table4(bad, SIZES, CLASSES, clips(), Evaluator(), cfg)
    with pytest.raises(ValueError, match=r"unknown class names \['cat'\]"):
        table4(concepts(), SIZES, CLASSES, clips(), Evaluator(),
               cfg.model_copy(update={"target_classes": ("dog", "cat")}))
    with pytest.raises(ValueError, match="no ConceptSet rows"):
        table4(concepts(), SIZES, CLASSES, clips(), Evaluator(),
               cfg.model_copy(update={"strategies": ("TAB",)}))
    wrong = clips().with_columns(pl.lit("dog").alias("label"))
    with pytest.raises(ValueError, match="test_clips.label"):
        table4(concepts(), SIZES, CLASSES, wrong, Evaluator(), cfg)


def test_count_matched_by_hand() -> None:
    """OCP natural counts (dog, water_drops, pouring_water) = (1, 2, 2); DB top-1 = (2, 1, 1)
    ({0, 3}, {1}, {2}); matched k = (1, 1, 1), each strategy taking its best-ranked neurons."""
    cfg = UnlearningConfig(model="toy", classifier_layer="fc", strategies=("DB", "OCP"),
                           closed_top_k=1)
    ev = Evaluator()
    df = table4(concepts(), SIZES, CLASSES, clips(), ev, cfg)
    ResultRow.validate_frame(df, "table4")
    counts = df.filter(pl.col("metric") == "n_pruned_matched")
    assert set(counts["value"]) == {1.0}
    ocp, db = summary(df, "OCP", "matched_count"), summary(df, "DB", "matched_count")
    # OCP: {0}, {1}, {1}: r_c − a_c = 2, 3, -1.5;  DB: {0}, {1}, {2}: 2, 3, 0.5
    assert ocp["r_minus_a"] == pytest.approx(3.5 / 3)
    assert db["r_minus_a"] == pytest.approx(5.5 / 3)
    assert ocp["avg_pruned"] == db["avg_pruned"] == 1.0
    assert ocp["r_minus_a_per_100"] == pytest.approx(100 * 3.5 / 3)
    assert summary(df, "DB")["avg_pruned"] == pytest.approx(4 / 3)
    assert "min of the strategies' non-zero natural counts" in summary_note(df, "OCP",
                                                                            "matched_count")
    fixed = table4(concepts(), SIZES, CLASSES, clips(), Evaluator(),
                   cfg.model_copy(update={"matched_count": 2}))
    # DB ranks one neuron for water_drops / pouring_water: excluded there at k = 2
    assert summary(fixed, "DB", "matched_count")["classes_pruned"] == 1
    summ, per = split_table4(df)
    assert set(summ["series"]) == {"natural_count", "matched_count"}
    assert set(per["series"]) == set(CLASSES)


def test_class_without_pruned_neurons_is_excluded_and_counted() -> None:
    no_dog = concepts().filter((pl.col("concept") != "dog") | (pl.col("kind") == "closed"))
    cfg = UnlearningConfig(model="toy", classifier_layer="fc", strategies=("DB", "OCP"),
                           closed_top_k=1)
    df = table4(no_dog, SIZES, CLASSES, clips(), Evaluator(), cfg)
    s = summary(df, "OCP")
    assert s["classes_pruned"] == 2
    assert s["delta_a"] == pytest.approx((-4 - 1) / 2)  # water_drops, pouring_water only
    assert s["avg_pruned"] == pytest.approx(4 / 3)  # natural count: zeros included
    assert "1 of 3 classes excluded from the means (pruned nothing): dog" in summary_note(df, "OCP")
    dog = df.filter((pl.col("group") == "OCP") & (pl.col("series") == "dog"))
    assert dog.filter(pl.col("metric") == "a_c")["value"].is_null().all()
    assert "pruned nothing" in dog.filter(pl.col("metric") == "a_c")["note"].item()
    # DB prunes dog neurons {0, 3} in the matched run; OCP stays excluded for dog
    assert summary(df, "DB", "matched_count")["classes_pruned"] == 3
    assert summary(df, "OCP", "matched_count")["classes_pruned"] == 2


def test_meaning_rule_uses_the_similarity_and_contains_token() -> None:
    cos = {("laughter", "laughing"): 0.8, ("bird", "crow"): 0.5}

    def sim(words: list[str], phrases: list[str]) -> np.ndarray:
        return np.array([[1.0 if w == p else cos.get((w, p), 0.1) for p in phrases]
                         for w in words])

    words = ["bird", "laughter", "dog"]
    got = match_nouns(words, ["laughing", "crow", "dog_bark"], "meaning", similarity=sim,
                      threshold=0.7)
    assert got == {"laughing": {"laughter": 0.8}, "crow": {}, "dog_bark": {"dog": 1.0}}
    assert match_nouns(words, ["laughing"], "token") == {"laughing": {}}
    with pytest.raises(ValueError, match="needs a text-encoder similarity"):
        match_nouns(words, ["crow"], "meaning")
    # in select_masks, the similarity ranks OCP neurons and the threshold comes from the config
    df = ConceptSet.frame([open_row(0, "bird"), open_row(1, "laughter"), open_row(2, "dog")])
    cfg = UnlearningConfig(model="toy", classifier_layer="fc", ocp_match="meaning",
                           ocp_threshold=0.45)
    masks = select_masks("OCP", df, {"h": 3}, ["laughing", "crow"], ["laughing", "crow"], cfg,
                         similarity=sim)
    assert {c: np.flatnonzero(m["h"]).tolist() for c, m in masks.items()} == {
        "laughing": [1], "crow": [0]}
