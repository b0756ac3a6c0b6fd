"""The neuron view: one row per neuron, joining the neuron-level records of a run.

Pure: takes lazy record frames, returns one lazy frame. :meth:`and_toolkit.run.Run.neurons`
feeds it the frames a run holds; ``and_toolkit.neurons(path)`` is the public shortcut.
"""

from __future__ import annotations

import polars as pl

from and_toolkit.records.models import CAPTION_VARIANTS, NEURON_KEY, POS_METHODS, open_method

KEY = list(NEURON_KEY)

OPEN_COLUMNS: dict[str, str] = {
    open_method(v): f"open_concepts_{v}" if v else "open_concepts" for v in CAPTION_VARIANTS}
"""ConceptSet method -> view column of Module C's kept adjectives (the open-set concepts)."""
POS_COLUMNS: dict[str, str] = {POS_METHODS["NOUN"]: "nouns", POS_METHODS["VERB"]: "verbs",
                               POS_METHODS["ADP"]: "preps"}
"""ConceptSet method -> view column of Module C's other part-of-speech lists."""


def score_column(method: str, similarity: str, variant: str, source: str) -> str:
    """View column of one description kind's detection AUC (ExplanationScore.auc):
    ``auc_<method>[_<similarity>][_<variant>][_audio]``, e.g. ``auc_DB_cos``, ``auc_SUM``,
    ``auc_OCP_descriptors``, ``auc_ICL_icl-top1_audio``."""
    parts = [method, similarity, variant, "audio" if source == "audio" else ""]
    return "auc_" + "_".join(p for p in parts if p)


def _side(lf: pl.LazyFrame, side: str, cols: dict[str, str]) -> pl.LazyFrame:
    """Rows of one side ('high'/'low'), with columns renamed by ``cols``."""
    return lf.filter(pl.col("side") == side).select(
        *KEY, *[pl.col(src).alias(dst) for src, dst in cols.items()]
    )


def neuron_view(
    *,
    activations: pl.LazyFrame | None = None,
    extremes: pl.LazyFrame | None = None,
    summaries: pl.LazyFrame | None = None,
    calibrated: pl.LazyFrame | None = None,
    concepts: pl.LazyFrame | None = None,
    scores: pl.LazyFrame | None = None,
) -> pl.LazyFrame | None:
    """One row per neuron from whichever record frames are given.

    Columns: ``model, layer, unit, alias, block, pooling, activations`` (Array(Float32, N),
    probe order) from ActivationTable; ``top_clips, top_values, bottom_clips, bottom_values``
    from Extremes; ``summary_high, summary_low`` (points) from Summary; ``calibrated`` (kept
    points) and ``calibration_dropped`` from CalibratedSummary; from ConceptSet ``closed_top1``
    (list of structs method / similarity / concept / score), ``open_concepts`` (Module C's kept
    adjectives of the captions alone, method OCP, by rank), ``open_concepts_descriptors`` (the
    same with descriptor sentences, method OCP+descriptors) and ``nouns`` / ``verbs`` /
    ``preps`` (Module C's POS:NOUN / POS:VERB / POS:ADP lists, by rank); from ExplanationScore
    one column per description kind the run scored (:func:`score_column`, the detection AUC on
    held-out clips); a neuron without such rows has null there. Missing record kinds
    contribute no columns.

    Returns:
        The view sorted by neuron key, or None when no frame is given.
    """
    frames: list[pl.LazyFrame] = []
    if activations is not None:
        frames.append(activations.select(*KEY, "alias", "block", "pooling",
                                         pl.col("values").alias("activations")))
    if extremes is not None:
        frames.append(_side(extremes, "high", {"clip_ids": "top_clips", "values": "top_values"}))
        frames.append(_side(extremes, "low", {"clip_ids": "bottom_clips",
                                              "values": "bottom_values"}))
    if summaries is not None:
        frames.append(_side(summaries, "high", {"points": "summary_high"}))
        frames.append(_side(summaries, "low", {"points": "summary_low"}))
    if calibrated is not None:
        frames.append(calibrated.select(*KEY, pl.col("kept").alias("calibrated"),
                                        pl.col("dropped").alias("calibration_dropped")))
    if concepts is not None:
        closed = (
            concepts.filter((pl.col("kind") == "closed") & (pl.col("rank") == 0))
            .sort([*KEY, "method", "similarity"])
            .group_by(KEY, maintain_order=True)
            .agg(pl.struct("method", "similarity", "concept", "score").alias("closed_top1"))
        )
        frames.append(closed)
        for method, column in {**OPEN_COLUMNS, **POS_COLUMNS}.items():
            frames.append(
                concepts.filter((pl.col("kind") == "open") & (pl.col("method") == method)
                                & (pl.col("verdict") == "kept"))
                .sort([*KEY, "rank"])
                .group_by(KEY, maintain_order=True)
                .agg(pl.col("concept").alias(column)))
    if scores is not None:
        kinds = scores.select("method", "similarity", "variant", "source").unique().collect()
        # captions before audio, the captions alone before the descriptor variant
        for method, similarity, variant, source in sorted(
                kinds.iter_rows(), key=lambda k: (k[3] != "caption", k[2], k[0], k[1])):
            frames.append(scores.filter(
                (pl.col("method") == method) & (pl.col("similarity") == similarity)
                & (pl.col("variant") == variant) & (pl.col("source") == source))
                .select(*KEY, pl.col("auc").alias(
                    score_column(method, similarity, variant, source))))
    if not frames:
        return None
    view = pl.concat([f.select(KEY) for f in frames]).unique()
    for f in frames:
        view = view.join(f, on=KEY, how="left")
    return view.sort(KEY)
