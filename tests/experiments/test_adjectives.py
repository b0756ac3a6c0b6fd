"""Fig 3 / 9 adjective counting (with merges) and Fig 5 per-block means and fits."""

from __future__ import annotations

import math

import polars as pl
import pytest
from scipy import stats

from and_toolkit.experiments.adjectives import (
    AdjectiveConfig,
    BlockAdjectiveConfig,
    adjective_counts,
    adjectives_per_block,
    neuron_blocks,
    open_adjectives,
    top_adjectives,
)
from and_toolkit.records import ConceptSet, ResultRow


def concept(layer: str, unit: int, word: str, *, model: str = "toy", pos: str | None = "ADJ",
            verdict: str = "kept", method: str = "OCP", kind: str = "open") -> dict:
    return {"model": model, "layer": layer, "unit": unit, "method": method, "similarity": "",
            "concept": word, "kind": kind, "rank": 0, "score": None, "pos": pos,
            "verdict": verdict}


def neuron(layer: str, unit: int, block: int | None, alias: str = "", model: str = "toy") -> dict:
    return {"model": model, "layer": layer, "unit": unit, "block": block, "alias": alias}


def neurons_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"model": pl.String, "layer": pl.String, "unit": pl.Int32,
                                      "block": pl.Int32, "alias": pl.String})


def merge_concepts() -> pl.DataFrame:
    return ConceptSet.frame([
        # neuron A: 'high' merges into 'high-quality', which it also has -> counted once
        concept("L", 0, "high"), concept("L", 0, "high-quality"), concept("L", 0, "loud"),
        # neuron B: 'low' -> 'low-quality'; 'Loud' lower-cased
        concept("L", 1, "low"), concept("L", 1, "Loud"),
        # not counted: dropped verdict, a noun, a closed concept
        concept("L", 2, "noisy", verdict="dropped:not-acoustic"),
        concept("L", 2, "dog", pos="NOUN"),
        concept("L", 2, "dog", method="DB", kind="closed", pos=None),
    ])


def test_adjective_counts_merge_and_count_each_neuron_once() -> None:
    counts = adjective_counts(merge_concepts(), AdjectiveConfig())
    assert counts.select("concept", "n_neurons", "rank").rows() == [
        ("loud", 2, 1), ("high-quality", 1, 2), ("low-quality", 1, 3)]


def test_open_adjectives_without_merges_keeps_raw_words() -> None:
    adj = open_adjectives(merge_concepts())
    assert sorted(adj.filter(pl.col("unit") == 0)["concept"]) == ["high", "high-quality", "loud"]


def test_top_adjectives_rows_and_paper_values() -> None:
    cfg = AdjectiveConfig(top_n=2, experiment="fig3", paper_model={"toy": "AST"})
    rows, counts = top_adjectives(merge_concepts(), cfg)
    ResultRow.validate_frame(rows)
    assert rows["series"].to_list() == ["loud", "high-quality"]
    assert rows["value"].to_list() == [2.0, 1.0]
    assert rows["x"].to_list() == [1.0, 2.0]
    assert rows["paper_value"].to_list() == [15500.0, 8600.0]
    assert set(rows["experiment"]) == {"fig3"}
    assert counts.height == 3


def _block_data(with_head: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Blocks 1..4, three neurons each, adjective counts (5-b) + (0, 1, -1)."""
    nrows, crows = [], []
    words = [f"w{i}" for i in range(10)]
    for b in range(1, 5):
        for j, offset in enumerate((0, 1, -1)):
            layer = f"blocks.{b - 1}.fc1"
            nrows.append(neuron(layer, j, b, alias=f"block{b}.fc1"))
            crows += [concept(layer, j, w) for w in words[:5 - b + offset]]
    if with_head:
        nrows.append(neuron("head", 0, None))
        crows.append(concept("head", 0, "loud"))
    crows.append(concept("not.in.population", 0, "loud"))
    return ConceptSet.frame(crows), neurons_frame(nrows)


def test_fig5_means_and_fits_match_hand_computation() -> None:
    concepts, neurons = _block_data(with_head=False)
    cfg = BlockAdjectiveConfig(paper_model={"toy": "AST"})
    rows, per_block = adjectives_per_block(concepts, neurons, cfg)
    ResultRow.validate_frame(rows)
    assert per_block["mean_adjectives"].to_list() == [4.0, 3.0, 2.0, 1.0]
    assert per_block["n_neurons"].to_list() == [3, 3, 3, 3]

    def val(key: str) -> float:
        return rows.filter(pl.col("key") == key)["value"][0]

    # x = relative depth b / 4. In blocks: Sxx = 15, Sxy = -15, SSE = 8, Syy = 23, n = 12;
    # on depth d = b / 4 the slope is -4 per unit depth, the intercept 5, r and p unchanged
    assert val("toy/fit/per_neuron/slope") == pytest.approx(-4.0)
    assert val("toy/fit/per_neuron/intercept") == pytest.approx(5.0)
    r = -math.sqrt(15 / 23)
    assert val("toy/fit/per_neuron/r") == pytest.approx(r)
    t = r * math.sqrt(10) / math.sqrt(1 - r * r)
    assert val("toy/fit/per_neuron/p_value") == pytest.approx(2 * stats.t.sf(abs(t), 10))
    assert val("toy/fit/per_neuron/n") == 12.0
    # block means lie exactly on y = 5 - 4 d
    assert val("toy/fit/block_means/slope") == pytest.approx(-4.0)
    assert val("toy/fit/block_means/r") == pytest.approx(-1.0)
    assert val("toy/fit/block_means/p_value") == pytest.approx(0.0, abs=1e-9)
    # the paper's slope on k/12 over its 12 AST block means, as the paper value
    paper_ast = (3.44, 3.76, 3.50, 3.46, 3.55, 3.52, 3.44, 3.04, 3.20, 3.30, 3.06, 2.95)
    fit = stats.linregress([k / 12 for k in range(1, 13)], paper_ast)
    for metric, want in (("slope", fit.slope), ("r", fit.rvalue), ("p_value", fit.pvalue)):
        got = rows.filter(pl.col("key") == f"toy/fit/block_means/{metric}")["paper_value"][0]
        assert got == pytest.approx(want)
    assert rows.filter(pl.col("key") == "toy/fit/per_neuron/slope")["paper_value"][0] is None
    # block b of 4 sits at depth b / 4 beside the paper's block 3b (same relative depth)
    blocks = rows.filter(pl.col("group") == "block").sort("x")
    assert blocks["x"].to_list() == [0.25, 0.5, 0.75, 1.0]
    assert blocks["paper_value"].to_list() == pytest.approx([3.50, 3.52, 3.20, 2.95])
    assert blocks["note"].to_list() == [f"block {b} of 4" for b in range(1, 5)]


def test_paper_fig5_interpolates_between_blocks() -> None:
    from and_toolkit.experiments.adjectives import paper_fig5_at

    assert paper_fig5_at("AST", 1 / 12) == pytest.approx(3.44)
    assert paper_fig5_at("AST", 0.2) == pytest.approx(3.76 + (0.2 - 2 / 12) * 12 * (3.50 - 3.76))
    assert paper_fig5_at("unknown", 0.5) is None


def test_fig5_head_goes_to_last_block_or_is_excluded() -> None:
    concepts, neurons = _block_data(with_head=True)
    _, last = adjectives_per_block(concepts, neurons, BlockAdjectiveConfig())
    assert last.filter(pl.col("block") == 4)["n_neurons"][0] == 4
    assert last.filter(pl.col("block") == 4)["mean_adjectives"][0] == 1.0  # (1+2+0+1)/4
    _, excl = adjectives_per_block(concepts, neurons, BlockAdjectiveConfig(head_block="exclude"))
    assert excl["n_neurons"].to_list() == [3, 3, 3, 3]


def test_fig5_single_block_reports_not_computable() -> None:
    concepts = ConceptSet.frame([concept("a", 0, "loud")])
    neurons = neurons_frame([neuron("a", 0, 1), neuron("a", 1, 1), neuron("a", 2, 1)])
    rows, _ = adjectives_per_block(concepts, neurons, BlockAdjectiveConfig())
    slope = rows.filter(pl.col("key") == "toy/fit/per_neuron/slope")
    assert slope["value"][0] is None and slope["note"][0].startswith("not computable")


def test_neuron_blocks_sublayers_and_errors() -> None:
    nb = neuron_blocks(neurons_frame([
        neuron("x.layers.0.mlp.fc1", 0, 1, alias="block1.fc1"),
        neuron("x.layers.0.attention.o_proj", 0, 1, alias=""),
        neuron("classifier.dense", 0, None, alias="head"),
    ]), "last")
    assert nb["sublayer"].to_list() == ["fc1", "o_proj", "head"]
    assert nb["block"].to_list() == [1, 1, 1]
    with pytest.raises(ValueError, match="duplicate"):
        neuron_blocks(neurons_frame([neuron("a", 0, 1), neuron("a", 0, 1)]), "last")
    with pytest.raises(ValueError, match="no block index"):
        neuron_blocks(neurons_frame([neuron("a", 0, None)]), "last")
    with pytest.raises(ValueError, match="missing columns"):
        neuron_blocks(pl.DataFrame({"model": ["m"]}), "last")
