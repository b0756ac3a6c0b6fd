"""Fig 4 ablations on a 10-neuron toy: known shuffles, tie order, budgets and compat switches.

random.Random(seed).shuffle(list(range(10))) gives
  seed 20:   [5, 3, 0, 7, 8, 9, 6, 1, 4, 2]
  seed 202:  [2, 4, 0, 3, 5, 1, 8, 9, 7, 6]
  seed 2024: [6, 0, 9, 8, 3, 5, 1, 4, 2, 7]
Pool position p is layer "a" unit p for p < 6, layer "b" unit p - 6 otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
import pytest

from and_toolkit.experiments.ablation import (
    AblationConfig,
    budgets,
    fig4,
    neuron_counts,
    prune_order,
    select_for_budget,
)
from and_toolkit.records import ConceptSet, ProbeClip, ResultRow

SIZES = {"a": 6, "b": 4}
NOUNS = [1, 3, 3, 0, 2, 3, 1, 0, 2, 1]  # per pool position
LOUD = {0, 2, 5, 7, 9}


def key(p: int) -> tuple[str, int]:
    return ("a", p) if p < 6 else ("b", p - 6)


def row(p: int, word: str, pos: str, verdict: str = "kept", layer: str | None = None,
        unit: int | None = None) -> dict[str, Any]:
    lay, u = key(p)
    return {"model": "toy", "layer": layer or lay, "unit": u if unit is None else unit,
            "method": "OCP", "similarity": pos, "concept": word, "kind": "open", "rank": 0,
            "score": None, "pos": pos, "verdict": verdict}


def toy_concepts(fc: bool = False) -> pl.DataFrame:
    rows = [row(p, f"noun{i}", "NOUN") for p, n in enumerate(NOUNS) for i in range(n)]
    rows += [row(p, "loud", "ADJ") for p in LOUD]
    rows += [row(0, "high-pitched", "ADJ"), row(0, "eerie", "ADJ"), row(1, "over", "ADP"),
             row(1, "bark", "VERB"), row(2, "quiet", "ADJ", verdict="dropped:llm")]
    if fc:
        rows += [row(0, f"n{i}", "NOUN", layer="fc", unit=1) for i in range(9)]
    return ConceptSet.frame(rows)


def test_neuron_counts() -> None:
    cfg = AblationConfig(model="toy", classifier_layer="fc")
    c = neuron_counts(toy_concepts(), SIZES, cfg)
    assert c.height == 10 and c["nouns"].to_list() == NOUNS
    first = c.row(0, named=True)
    assert (first["adjectives"], first["basic_adj"], first["high_adj"]) == (3, 2, 1)
    assert first["adj:high-pitched"] and first["adj:loud"] and not first["adj:clear"]
    assert c.row(1, named=True)["preps"] == 1 and c.row(1, named=True)["verbs"] == 1
    assert c.row(2, named=True)["adjectives"] == 1  # 'quiet' dropped by the filter
    assert np.flatnonzero(c["adj:loud"].to_numpy()).tolist() == sorted(LOUD)
    assert c["caption_len"].is_null().all()
    lens = pl.DataFrame({"layer": ["b"], "unit": [3], "caption_len": [17]})
    assert neuron_counts(toy_concepts(), SIZES, cfg, lens)["caption_len"].to_list() == \
        [0] * 9 + [17]
    with pytest.raises(ValueError, match=r"layer \['fc'\] not in layer_sizes"):
        neuron_counts(toy_concepts(fc=True), SIZES, cfg)
    with pytest.raises(ValueError, match="units outside their layer"):
        neuron_counts(toy_concepts(), {"a": 6, "b": 2}, cfg)


def test_prune_order_ties_and_seeds() -> None:
    counts = np.array(NOUNS)
    assert prune_order(counts, 10, 20).tolist() == [5, 1, 2, 8, 4, 0, 9, 6, 3, 7]
    assert prune_order(counts, 10, 202).tolist() == [2, 5, 1, 4, 8, 0, 9, 6, 3, 7]
    assert prune_order(counts, 10, 2024).tolist() == [5, 1, 2, 8, 4, 6, 0, 9, 3, 7]
    assert prune_order(None, 10, 20).tolist() == [5, 3, 0, 7, 8, 9, 6, 1, 4, 2]
    loud = np.isin(np.arange(10), list(LOUD))
    shuffled = prune_order(None, 10, 20)
    assert select_for_budget(shuffled, 4, loud).tolist() == [5, 0, 7, 9]
    assert select_for_budget(shuffled, 6, loud).tolist() == [5, 0, 7, 9, 2]  # fewer qualify


def test_budgets() -> None:
    pct = (2, 4, 6, 8, 10, 12)
    assert budgets(pct, 55346) == [1107, 2214, 3321, 4428, 5535, 6642]
    assert budgets(pct, 55346, typo_compat=True)[-1] == 6442


class Recorder:
    """Clip 0 fails if pool position 5 is pruned, clip 1 if position 4, clip 2 if position 6;
    clip 3 always succeeds. Records the pruned pool positions of each call."""

    def __init__(self) -> None:
        self.calls: list[set[int]] = []

    def __call__(self, mask: Mapping[str, np.ndarray]) -> np.ndarray:
        pruned = {int(u) for u in np.flatnonzero(mask["a"])}
        pruned |= {6 + int(u) for u in np.flatnonzero(mask["b"])}
        self.calls.append(pruned)
        logits = np.eye(2)[[0, 0, 0, 0]]
        for clip, p in enumerate((5, 4, 6)):
            if p in pruned:
                logits[clip] = [0.0, 1.0]
        return logits


def clips() -> pl.DataFrame:
    return ProbeClip.frame([
        {"dataset": "toy", "clip_id": f"c{i}", "index": i, "path": "", "label": "x",
         "target": 0, "fold": 1, "sample_rate": 16000, "n_samples": 1} for i in range(4)])


def acc(df: pl.DataFrame, exp: str, crit: str, series: str, x: float) -> float:
    return df.filter((pl.col("experiment") == exp) & (pl.col("group") == crit)
                     & (pl.col("series") == series) & (pl.col("x") == x)
                     & (pl.col("metric") == "accuracy"))["value"].item()


def test_fig4_prune_sets_and_means() -> None:
    cfg = AblationConfig(model="toy", classifier_layer="fc", percents=(40.0,),
                         criteria_4a=("random", "nouns"), panels=("4a", "4c"),
                         adjectives_4c=("loud",), paper_model="AST")
    counts = neuron_counts(toy_concepts(), SIZES, cfg)
    rec = Recorder()
    df = fig4(counts, SIZES, clips(), rec, cfg)
    ResultRow.validate_frame(df, "fig4")
    assert df["key"].n_unique() == df.height
    # nouns, budget 4: seed 20 {5,1,2,8}, 202 {2,5,1,4}, 2024 {5,1,2,8}
    assert {2, 5, 1, 4} in rec.calls and {5, 1, 2, 8} in rec.calls and {5, 0, 7, 9} in rec.calls
    assert acc(df, "fig4a", "nouns", "seed=20", 40.0) == 0.75
    assert acc(df, "fig4a", "nouns", "seed=202", 40.0) == 0.5
    assert acc(df, "fig4a", "nouns", "mean", 40.0) == pytest.approx(2 / 3)
    # random, budget 4: seed 20 {5,3,0,7} -> .75; 202 {2,4,0,3} -> .75; 2024 {6,0,9,8} -> .75
    assert acc(df, "fig4a", "random", "mean", 40.0) == 0.75
    assert acc(df, "fig4c", "loud", "seed=20", 40.0) == 0.75
    zero = df.filter((pl.col("x") == 0.0) & (pl.col("group") == "nouns"))
    assert zero["value"].item() == 1.0 and zero["paper_value"].item() == 0.95  # measured
    cap = df.filter(pl.col("group") == "caption_len")
    assert cap.height == 0  # not among the configured criteria
    assert len(rec.calls) == len({frozenset(c) for c in rec.calls})  # each mask evaluated once


def test_fig4_classifier_never_pruned_and_compat() -> None:
    sizes = {**SIZES, "fc": 2}
    cfg = AblationConfig(model="toy", classifier_layer="fc", percents=(25.0,),
                         criteria_4a=("nouns", "caption_len"), panels=("4a",), seeds=(20,))
    counts = neuron_counts(toy_concepts(fc=True), sizes, cfg)
    rec = Recorder()
    df = fig4(counts, sizes, clips(), rec, cfg)
    assert {5, 1, 2} in rec.calls  # budget round(0.25 * 12) = 3 from the 10 hidden neurons
    cap = df.filter((pl.col("group") == "caption_len") & (pl.col("series") == "mean"))
    assert cap["value"].is_null().all()
    assert set(cap["note"]) == {"not run: no caption lengths given"}
    ref = AblationConfig.reference(model="toy", classifier_layer="fc", percents=(25.0,),
                                   criteria_4a=("nouns",), panels=("4a",), seeds=(20,))
    rec = Recorder()
    df = fig4(counts, sizes, clips(), rec, ref)
    # pool of 12 (fc#1 has 9 nouns and sorts first, using budget but not pruned):
    # shuffle [5,3,0,7,8,9,6,1,4,2,10,11] -> sorted [11,5,1,2,...]; first 3 -> {5,1} pruned,
    # row-order compat turns layer a's {1,5} into units {0,1}
    assert {0, 1} in rec.calls
    assert df.filter(pl.col("x") == 0.0)["value"].item() == 0.95


def test_fig4c_selects_the_neurons_fig9_counts() -> None:
    """Issue 9 item 8: Fig 9 counted 113 'high-quality' neurons (its merge high ->
    high-quality) while Fig 4c matched the literal word and pruned none. Both now use one
    definition (adjectives.open_adjectives with the same merges)."""
    from and_toolkit.experiments.adjectives import AdjectiveConfig, adjective_counts

    concepts = pl.concat([toy_concepts(), ConceptSet.frame(
        [row(3, "high", "ADJ"), row(4, "High", "ADJ"), row(8, "'clear'", "ADJ")])])
    cfg = AblationConfig(model="toy", classifier_layer="fc")
    counts = neuron_counts(concepts, SIZES, cfg)
    fig9 = adjective_counts(concepts, AdjectiveConfig())
    for word in cfg.adjectives_4c:
        n9 = fig9.filter(pl.col("concept") == word)["n_neurons"].sum()
        assert int(counts[f"adj:{word}"].sum()) == n9, word
    assert np.flatnonzero(counts["adj:high-quality"].to_numpy()).tolist() == [3, 4]
    assert np.flatnonzero(counts["adj:clear"].to_numpy()).tolist() == [8]
    assert counts.row(3, named=True)["basic_adj"] == 1  # merged 'high' is the basic word
    ref = AblationConfig.reference(model="toy", classifier_layer="fc")  # authors: raw 'high'
    assert np.flatnonzero(neuron_counts(concepts, SIZES, ref)["adj:high"].to_numpy()).tolist() \
        == [3, 4]


def test_a_series_that_prunes_nothing_is_not_drawn() -> None:
    """A 4c adjective no neuron holds gives one tabulated row saying why, no curve; the
    report draws no line for it."""
    from and_toolkit.experiments.encoding import split_fig4
    from and_toolkit.report.sections import SECTIONS_BY_ID
    from and_toolkit.report.views import build_section

    cfg = AblationConfig(model="toy", classifier_layer="fc", percents=(40.0,), panels=("4c",),
                         adjectives_4c=("loud", "high-pitched", "silent"))
    df = fig4(neuron_counts(toy_concepts(), SIZES, cfg), SIZES, clips(), Recorder(), cfg)
    silent = df.filter(pl.col("group") == "silent")
    assert silent["x"].is_null().all()
    assert set(silent["metric"]) == {"n_eligible", "n_pruned"}
    assert silent.filter(pl.col("metric") == "n_pruned")["note"].item().startswith(
        "not plotted: 'silent' prunes no neuron")
    loud = df.filter((pl.col("group") == "loud") & pl.col("x").is_not_null())
    assert set(loud["x"]) == {0.0, 40.0}
    assert df.filter(pl.col("metric") == "accuracy_sd").height == 2
    view = build_section(SECTIONS_BY_ID["fig4c"], split_fig4(df)["fig4c"])
    assert view.status == "ok" and len(view.figures) == 1
    svg = view.figures[0].svg
    assert "loud" in svg and "high-pitched" in svg and "silent" not in svg
    assert any("silent" in str(t) for t in view.tables)  # the reason is tabulated
