"""The neuron view: one row per neuron, joining every record a run holds."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from and_toolkit.records.models import (
    CalibratedSummary,
    ConceptSet,
    Extremes,
    Summary,
)
from and_toolkit.run import Run
from and_toolkit.store import scan_records

KEY = ["model", "layer", "unit"]


def _side(lf: pl.LazyFrame, side: str, cols: dict[str, str]) -> pl.LazyFrame:
    """Rows of one side ('high'/'low'), with columns renamed by ``cols``."""
    return lf.filter(pl.col("side") == side).select(
        *KEY, *[pl.col(src).alias(dst) for src, dst in cols.items()]
    )


def neurons(run: str | Path | Run) -> pl.LazyFrame:
    """One Polars LazyFrame, one row per recorded neuron of the run.

    Columns: ``model, layer, unit, alias, block, pooling, activations`` (Array(Float32, N),
    probe order) when activations exist; ``top_clips, top_values, bottom_clips, bottom_values``
    from Extremes; ``summary_high, summary_low`` (points) from Summary; ``calibrated`` (kept
    points) and ``calibration_dropped`` from CalibratedSummary; ``closed_top1`` (list of structs
    method / similarity / concept / score) and ``open_concepts`` (kept open-set words) from
    ConceptSet. Missing record kinds simply contribute no columns.

    Args:
        run: a run directory or :class:`Run`.

    Raises:
        RecordValidationError: a record file of the run is of the wrong kind or version.
        FileNotFoundError: the run holds no neuron-level records at all.
    """
    run = run if isinstance(run, Run) else Run.at(run)
    frames: list[pl.LazyFrame] = []
    if run.activation_files():
        frames.append(
            run.scan_activations().select(*KEY, "alias", "block", "pooling",
                                          pl.col("values").alias("activations"))
        )
    if run.has(Extremes):
        ex = scan_records(Extremes, run.path(Extremes))
        frames.append(_side(ex, "high", {"clip_ids": "top_clips", "values": "top_values"}))
        frames.append(_side(ex, "low", {"clip_ids": "bottom_clips", "values": "bottom_values"}))
    if run.has(Summary):
        sm = scan_records(Summary, run.path(Summary))
        frames.append(_side(sm, "high", {"points": "summary_high"}))
        frames.append(_side(sm, "low", {"points": "summary_low"}))
    if run.has(CalibratedSummary):
        cal = scan_records(CalibratedSummary, run.path(CalibratedSummary))
        frames.append(cal.select(*KEY, pl.col("kept").alias("calibrated"),
                                 pl.col("dropped").alias("calibration_dropped")))
    if run.has(ConceptSet):
        cs = scan_records(ConceptSet, run.path(ConceptSet))
        closed = (
            cs.filter((pl.col("kind") == "closed") & (pl.col("rank") == 0))
            .sort([*KEY, "method", "similarity"])
            .group_by(KEY, maintain_order=True)
            .agg(pl.struct("method", "similarity", "concept", "score").alias("closed_top1"))
        )
        opened = (
            cs.filter((pl.col("kind") == "open") & (pl.col("verdict") == "kept"))
            .sort([*KEY, "rank"])
            .group_by(KEY, maintain_order=True)
            .agg(pl.col("concept").alias("open_concepts"))
        )
        frames += [closed, opened]
    if not frames:
        raise FileNotFoundError(f"{run.root}: the run holds no neuron records yet")
    keys = pl.concat([f.select(KEY) for f in frames]).unique()
    view = keys
    for f in frames:
        view = view.join(f, on=KEY, how="left")
    return view.sort(KEY)
