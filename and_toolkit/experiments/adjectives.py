"""Adjective statistics of Module C's open-set concepts: Fig 3 / Fig 9 and Fig 5.

Reference: reference-spec §6 items 5-6, §9; paper Sec 3.5 (Fig 3), Sec 4.4 (Fig 5), Appendix D
(Fig 9).

* :func:`top_adjectives` (Fig 3: AST top-10; Fig 9: every model, top-20): over all neurons,
  how many neurons have each adjective in C_open-set. Each neuron counts a word once, after the
  Fig 3 notebook's merges ``high -> high-quality`` and ``low -> low-quality`` (a neuron holding
  both "high" and "high-quality" counts once).
* :func:`adjectives_per_block` (Fig 5): per block, the mean |C_open-set| over every neuron of
  the block (neurons with no open concept count 0; head neurons without a block go to the
  model's last block, as the authors' code), plus scipy ``linregress`` of count on *relative
  depth* over per-neuron pairs and over the block means (the README legend quotes p-values
  whose computation is not in the authors' repo). |C_open-set| counts distinct words without
  merges. Relative depth d = b / B for block b = 1..B of a model with B blocks (B = its largest
  block number): the first block of a 12-block model is 1/12, the last block of any model 1.
  Our models have 4-6 blocks, the paper's 12, so blocks are compared at equal d: the paper
  value of our block b is the paper's Fig 5 curve (points (k/12, value_k), k = 1..12) linearly
  interpolated at d = b / B (exact when 12 is a multiple of B), and the paper's fit is the
  same ``linregress`` over its 12 block means on k/12 (:func:`paper_fig5_fit`).

This module also holds helpers the other experiment modules share: :func:`require_columns`
and :func:`neuron_blocks` (block / sub-layer of every neuron). Rows are built with
``experiments.rows`` (:func:`result_row`, :func:`result_key`).

Paper numbers come from ``experiments/paper.py``; the Fig 3 read-off is a constant below
(not yet in paper.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.experiments.paper import FIG5 as PAPER_FIG5
from and_toolkit.experiments.rows import result_key, result_row, tagged
from and_toolkit.records.models import NEURON_KEY, ResultRow

KEY: tuple[str, ...] = NEURON_KEY
"""The neuron key columns."""

#: Fig 3 (README figure, AST, read off approximately): neurons per adjective.
PAPER_FIG3_AST: Mapping[str, float] = MappingProxyType({
    "high-pitched": 15800.0, "loud": 15500.0, "high-quality": 8600.0, "intense": 7400.0,
    "repetitive": 5300.0, "muffled": 4400.0, "distorted": 4400.0, "natural": 3700.0,
    "low-quality": 2500.0, "noisy": 2400.0,
})
#: Fig 5 legend p-values (README figure; only bounds are printed).
PAPER_FIG5_P_NOTE: Mapping[str, str] = MappingProxyType({
    "AST": "paper: p<0.001", "BEATs-finetuned": "paper: p<0.001", "BEATs-frozen": "paper: p>0.05",
})


# ----- shared helpers ---------------------------------------------------------------------------
def require_columns(df: pl.DataFrame, columns: list[str], name: str) -> None:
    """Raise a ValueError naming the frame and the missing columns, if any.

    Args:
        df: the frame.
        columns: required column names.
        name: argument name used in the message.

    Raises:
        ValueError: if a column is missing.
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing} (has {df.columns})")


HeadBlock = Literal["last", "exclude"]


def neuron_blocks(neurons: pl.DataFrame, head_block: HeadBlock) -> pl.DataFrame:
    """Block and sub-layer of every neuron.

    Args:
        neurons: one row per neuron with columns ``model, layer, unit, block`` (Int, nullable)
            and ``alias`` (e.g. an ActivationTable frame without ``values``). An optional
            ``sublayer`` column overrides the derived sub-layer.
        head_block: neurons with a null block (the classifier head): "last" assigns them to
            the model's largest block (the authors' Fig 5), "exclude" drops them.

    Returns:
        Frame ``model, layer, unit, block (Int32), sublayer (String)``, one row per neuron, no
        nulls. ``sublayer`` is the last dot-separated part of ``alias`` (of ``layer`` if
        ``alias`` is empty), e.g. "block3.fc1" -> "fc1"; head neurons get "head".

    Raises:
        ValueError: missing columns, duplicate neurons, or a model with no block at all
            while ``head_block="last"`` needs one.
    """
    require_columns(neurons, [*KEY, "block", "alias"], "neurons")
    if neurons.select(*KEY).is_duplicated().any():
        raise ValueError("neurons: duplicate (model, layer, unit) rows")
    name = pl.when(pl.col("alias") != "").then(pl.col("alias")).otherwise(pl.col("layer"))
    sub = (pl.col("sublayer") if "sublayer" in neurons.columns
           else name.str.split(".").list.last())
    df = neurons.select(*KEY, pl.col("block").cast(pl.Int32), sub.alias("sublayer"))
    if head_block == "exclude":
        return df.filter(pl.col("block").is_not_null())
    last = pl.col("block").max().over("model")
    no_block = df.filter(last.is_null())["model"].unique().to_list()
    if no_block:
        raise ValueError(f"neurons: models {no_block} have no block index; cannot assign the "
                         "head to the last block (use head_block='exclude' or set block)")
    head = pl.col("block").is_null()
    return df.with_columns(
        pl.when(head).then(pl.lit("head")).otherwise(pl.col("sublayer")).alias("sublayer"),
        pl.col("block").fill_null(last).cast(pl.Int32),
    )


# ----- configs ----------------------------------------------------------------------------------
class AdjectiveConfig(BaseModel):
    """Which ConceptSet rows are the open-set adjectives, and how Fig 3 / 9 merges them.

    Attributes:
        method: ConceptSet.method of Module C rows (default "OCP").
        pos: required ConceptSet.pos ("ADJ"); None keeps every part of speech.
        merges: word -> merged word for counting (Fig 3 notebook: high, low).
        top_n: adjectives per model in the ResultRow frame (Fig 3: 10, Fig 9: 20).
        experiment: experiment id of the rows ("fig9"; use "fig3" for the AST top-10).
        paper_model: our model id -> paper model name ("AST", "BEATs-finetuned",
            "BEATs-frozen") for paper values; ids not listed are looked up as they are.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = "OCP"
    pos: str | None = "ADJ"
    merges: dict[str, str] = Field(
        default_factory=lambda: {"high": "high-quality", "low": "low-quality"})
    top_n: int = Field(default=20, ge=1)
    experiment: str = "fig9"
    paper_model: dict[str, str] = Field(default_factory=dict)


class BlockAdjectiveConfig(BaseModel):
    """Fig 5 settings.

    Attributes:
        method, pos: as :class:`AdjectiveConfig`.
        head_block: where block-less head neurons go ("last" = the authors' choice).
        experiment: experiment id of the rows.
        paper_model: as :class:`AdjectiveConfig`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = "OCP"
    pos: str | None = "ADJ"
    head_block: HeadBlock = "last"
    experiment: str = "fig5"
    paper_model: dict[str, str] = Field(default_factory=dict)


# ----- transforms -------------------------------------------------------------------------------
def open_adjectives(concepts: pl.DataFrame, method: str = "OCP", pos: str | None = "ADJ",
                    merges: Mapping[str, str] | None = None) -> pl.DataFrame:
    """The kept open-set words of every neuron, one row per (neuron, word).

    Args:
        concepts: ConceptSet frame.
        method: ConceptSet.method of the open-set rows.
        pos: required part of speech; None keeps all.
        merges: optional word -> merged word map, applied after lower-casing and stripping
            quotes; duplicates created by merging are removed.

    Returns:
        Frame ``model, layer, unit, concept`` (unique rows, sorted).

    Raises:
        ValueError: if a ConceptSet column is missing.
    """
    require_columns(concepts, [*KEY, "method", "concept", "kind", "pos", "verdict"], "concepts")
    keep = ((pl.col("kind") == "open") & (pl.col("method") == method)
            & (pl.col("verdict") == "kept"))
    if pos is not None:
        keep = keep & (pl.col("pos") == pos)
    word = pl.col("concept").str.to_lowercase().str.strip_chars().str.strip_chars("'")
    if merges:
        word = word.replace(dict(merges))
    return (concepts.filter(keep).select(*KEY, word.alias("concept"))
            .unique().sort([*KEY, "concept"]))


def adjective_counts(concepts: pl.DataFrame, config: AdjectiveConfig) -> pl.DataFrame:
    """Neurons per adjective and model (merged as in Fig 3), every adjective.

    Args:
        concepts: ConceptSet frame.
        config: selection and merges.

    Returns:
        Frame ``model, concept, n_neurons (Int64), rank (Int32, 1 = most neurons; ties by
        word)``, sorted by model and rank.
    """
    adj = open_adjectives(concepts, config.method, config.pos, config.merges)
    counts = (adj.group_by("model", "concept").agg(pl.len().cast(pl.Int64).alias("n_neurons"))
              .sort(["model", "n_neurons", "concept"], descending=[False, True, False]))
    return counts.with_columns(
        pl.int_range(1, pl.len() + 1).over("model").cast(pl.Int32).alias("rank"))


def top_adjectives(concepts: pl.DataFrame, config: AdjectiveConfig) -> tuple[
        pl.DataFrame, pl.DataFrame]:
    """Fig 3 / Fig 9: the ``top_n`` most common open-set adjectives of each model.

    Args:
        concepts: ConceptSet frame (all neurons of the models to count, head included).
        config: selection, merges, ``top_n`` and experiment id.

    Returns:
        (rows, counts): ``rows`` is a ResultRow frame, one row per (model, top word): key
        "<model>/<word>", group "", series = word, x = rank, metric "n_neurons", paper
        value from the README Fig 3 for AST words; ``counts`` is :func:`adjective_counts`
        (every word, for the figure's bars or a longer list).
    """
    counts = adjective_counts(concepts, config)
    rows = []
    for r in counts.filter(pl.col("rank") <= config.top_n).iter_rows(named=True):
        paper = config.paper_model.get(r["model"], r["model"])
        pv = PAPER_FIG3_AST.get(r["concept"]) if paper == "AST" else None
        rows.append(result_row(
            config.experiment, result_key(r["model"], r["concept"]), "n_neurons",
            float(r["n_neurons"]), model=r["model"], group="", series=r["concept"],
            x=float(r["rank"]), paper_value=pv,
            note="paper: README figure, approx." if pv is not None else ""))
    return ResultRow.frame(rows), counts


def paper_fig5_at(paper_model: str, depth: float) -> float | None:
    """The paper's Fig 5 value at relative depth ``depth`` in [1/12, 1] (linear interpolation
    between its blocks k/12), or None for a model without Fig 5 values."""
    ref = PAPER_FIG5.get(paper_model)  # type: ignore[call-overload]
    if ref is None:
        return None
    grid = np.arange(1, len(ref) + 1) / len(ref)
    return float(np.interp(depth, grid, np.asarray(ref, dtype=np.float64)))


def paper_fig5_fit(paper_model: str) -> dict[str, float]:
    """``linregress`` of the paper's 12 Fig 5 block means on relative depth k/12: slope
    (adjectives per neuron per unit relative depth), intercept, r, p_value; {} for a model
    without Fig 5 values."""
    ref = PAPER_FIG5.get(paper_model)  # type: ignore[call-overload]
    if ref is None:
        return {}
    grid = np.arange(1, len(ref) + 1) / len(ref)
    from scipy import stats  # about a second to import: only the fits need it

    res = stats.linregress(grid, np.asarray(ref, dtype=np.float64))
    return {"slope": float(res.slope), "intercept": float(res.intercept),
            "r": float(res.rvalue), "p_value": float(res.pvalue)}


def _linregress_rows(experiment: str, model: str, series: str, x: np.ndarray, y: np.ndarray,
                     note: str, paper: dict[str, float] | None = None) -> list[dict[str, object]]:
    """slope / intercept / r / p_value / n rows of a linregress of y on x (``paper``: paper
    values by metric)."""
    metrics = ("slope", "intercept", "r", "p_value")
    if len(x) < 3 or np.ptp(x) == 0:
        why = "not computable: fewer than 3 points or a single block"
        vals: tuple[float | None, ...] = (None,) * 4
    else:
        from scipy import stats

        res = stats.linregress(x, y)
        fit = (float(res.slope), float(res.intercept), float(res.rvalue), float(res.pvalue))
        vals = fit
        why = note
        if not all(np.isfinite(v) for v in fit):
            why = "not computable: constant counts" if np.ptp(y) == 0 else note
    out = [result_row(experiment, result_key(model, "fit", series, m), m, v, model=model,
                      group="fit", series=series, note=why,
                      paper_value=(paper or {}).get(m))
           for m, v in zip(metrics, vals, strict=True)]
    out.append(result_row(experiment, result_key(model, "fit", series, "n"), "n_points",
                          float(len(x)), model=model, group="fit", series=series))
    return out


def adjectives_per_block(concepts: pl.DataFrame, neurons: pl.DataFrame,
                         config: BlockAdjectiveConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fig 5: mean |C_open-set| per block, with linear fits and their p-values.

    The population is ``neurons`` (concept rows of other neurons are ignored); a neuron
    without kept open concepts counts 0.

    Args:
        concepts: ConceptSet frame.
        neurons: one row per neuron, see :func:`neuron_blocks`.
        config: selection, head handling, experiment id.

    Returns:
        (rows, per_block): ``rows`` is a ResultRow frame with, per model and block, metric
        "mean_adjectives" (group "block", key "<model>/block=<b>/mean", x = relative depth
        b / B, paper value = the paper's curve at that depth, note "block b of B"); and per
        model (x null), group "fit", series "per_neuron" (linregress over every (relative
        depth, count) pair) and "block_means" (over the block means), metrics slope,
        intercept, r, p_value, n_points; the "block_means" slope / intercept / r / p_value
        rows carry the same fit of the paper's 12 block means on k/12 as paper values. ``per_block`` is ``model, block, n_blocks,
        depth, n_neurons, mean_adjectives, std_adjectives``.

    Raises:
        ValueError: missing columns or bad neuron metadata (see :func:`neuron_blocks`).
    """
    blocks = neuron_blocks(neurons, config.head_block)
    adj = open_adjectives(concepts, config.method, config.pos, merges=None)
    n_adj = adj.group_by(*KEY).agg(pl.len().cast(pl.Int64).alias("n_adjectives"))
    n_blocks = pl.col("block").max().over("model")
    per_neuron = (blocks.join(n_adj, on=list(KEY), how="left")
                  .with_columns(pl.col("n_adjectives").fill_null(0),
                                n_blocks.cast(pl.Int32).alias("n_blocks"),
                                (pl.col("block") / n_blocks).alias("depth")))
    per_block = (per_neuron.group_by("model", "block", "n_blocks", "depth")
                 .agg(pl.len().cast(pl.Int64).alias("n_neurons"),
                      pl.col("n_adjectives").mean().alias("mean_adjectives"),
                      pl.col("n_adjectives").std(ddof=0).alias("std_adjectives"))
                 .sort("model", "block"))
    rows: list[dict[str, object]] = []
    exp = config.experiment
    for model in per_block["model"].unique().sort().to_list():
        paper = config.paper_model.get(model, model)
        pb = per_block.filter(pl.col("model") == model)
        for r in pb.iter_rows(named=True):
            b, depth = int(r["block"]), float(r["depth"])
            rows.append(result_row(exp, result_key(model, tagged("block", b), "mean"),
                                   "mean_adjectives", r["mean_adjectives"], model=model,
                                   group="block", x=depth,
                                   paper_value=paper_fig5_at(paper, depth),
                                   note=f"block {b} of {r['n_blocks']}"))
        pn = per_neuron.filter(pl.col("model") == model)
        note = PAPER_FIG5_P_NOTE.get(paper, "")
        rows += _linregress_rows(exp, model, "per_neuron", pn["depth"].to_numpy().astype(float),
                                 pn["n_adjectives"].to_numpy().astype(float), note)
        pfit = paper_fig5_fit(paper)
        if pfit:
            note = ("paper value: the same fit of the paper's 12 Fig 5 block means on k/12"
                    + (f"; legend {note}" if note else ""))
        rows += _linregress_rows(exp, model, "block_means",
                                 pb["depth"].to_numpy().astype(float),
                                 pb["mean_adjectives"].to_numpy().astype(float), note,
                                 paper=pfit)
    return ResultRow.frame(rows), per_block
