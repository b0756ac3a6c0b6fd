"""The descriptions a neuron has, as texts to score, and the clips each one was written from.

Pure Polars: record frames in, frames out (``dissect/scoring.py`` scores them). Descriptions
scored per neuron (issue 15):

* ``closed``: the top-1 closed-set concept of every Module A method x similarity that ran
  (``ConceptSet`` rows of kind ``closed`` and rank 0; underscores as spaces, as encoded by
  Module A: ``dissect.closed.concept_texts``);
* ``summary`` (method ``SUM``): the calibrated summary S_h, its kept points joined by spaces;
* ``open`` (method ``OCP``): Module C's kept open-set adjectives, by rank, joined as one phrase
  ("loud, sharp, brief").

Caption variant ``""`` takes S_h and the adjectives of the imported captions alone; ``"descriptors"``
(the labelled variant) those of the captions + our acoustic-descriptor sentences. Closed-set
concepts are the same in both variants (Module A reads the captions alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from and_toolkit.records.models import CAPTION_VARIANTS, NEURON_KEY, open_method

KEY = list(NEURON_KEY)
DESCRIPTION_COLUMNS = [*KEY, "kind", "method", "similarity", "variant", "description"]
"""Columns of :func:`descriptions` (a description kind = kind, method, similarity, variant)."""
SUMMARY_METHOD = "SUM"
OPEN_METHOD = "OCP"


def descriptions(concepts: pl.DataFrame, calibrated: pl.DataFrame | None, variant: str = ""
                 ) -> pl.DataFrame:
    """Every scorable description of every neuron for one caption variant.

    Args:
        concepts: ConceptSet rows (closed and open) of the run.
        calibrated: CalibratedSummary rows of the variant (None: no summaries scored).
        variant: ``""`` or ``"descriptors"`` (``records.CAPTION_VARIANTS``).

    Returns:
        Columns :data:`DESCRIPTION_COLUMNS`, one row per (neuron, description kind) with a
        non-empty description, sorted.

    Raises:
        ValueError: an unknown variant.
    """
    if variant not in CAPTION_VARIANTS:
        raise ValueError(f"unknown caption variant {variant!r} (known: {CAPTION_VARIANTS})")
    frames = [
        concepts.filter((pl.col("kind") == "closed") & (pl.col("rank") == 0)
                        & (pl.col("verdict") == "kept"))
        .select(*KEY, pl.lit("closed").alias("kind"), "method", "similarity",
                pl.col("concept").str.replace_all("_", " ").alias("description")),
        concepts.filter((pl.col("kind") == "open") & (pl.col("method") == open_method(variant))
                        & (pl.col("verdict") == "kept"))
        .sort([*KEY, "rank"])
        .group_by(KEY, maintain_order=True)
        .agg(pl.col("concept").str.join(", ").alias("description"))
        .select(*KEY, pl.lit("open").alias("kind"), pl.lit(OPEN_METHOD).alias("method"),
                pl.lit("").alias("similarity"), "description"),
    ]
    if calibrated is not None:
        frames.append(calibrated.select(
            *KEY, pl.lit("summary").alias("kind"), pl.lit(SUMMARY_METHOD).alias("method"),
            pl.lit("").alias("similarity"),
            pl.col("kept").list.join(" ").alias("description")))
    out = pl.concat([f.with_columns(pl.col("unit").cast(pl.Int32)) for f in frames])
    out = out.filter(pl.col("description").str.strip_chars().str.len_chars() > 0)
    return (out.with_columns(pl.lit(variant).alias("variant")).select(DESCRIPTION_COLUMNS)
            .sort(DESCRIPTION_COLUMNS[:-1]))


def excluded_clips(extremes: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The clips each neuron's descriptions were written from: its top-K and bottom-K clips of
    every Extremes frame given (the run's K and every extra K).

    Args:
        extremes: Extremes frames.

    Returns:
        Distinct ``model, layer, unit, clip_id`` rows.
    """
    if not extremes:
        return pl.DataFrame(schema={"model": pl.String, "layer": pl.String, "unit": pl.Int32,
                                    "clip_id": pl.String})
    return (pl.concat([e.select(*KEY, pl.col("clip_ids").alias("clip_id")) for e in extremes])
            .explode("clip_id").drop_nulls("clip_id").unique().sort([*KEY, "clip_id"]))
