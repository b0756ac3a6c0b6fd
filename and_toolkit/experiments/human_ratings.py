"""Table 3 from the ratings our own raters gave in the explorer (``Rating`` records).

The paper's Table 3 reports the mean 1-5 rating of each method's description over 120 AST
neurons (10 per block), rated by the authors' annotators. :func:`rating_table` computes the
same mean from ``<run>/ratings.parquet``: ratings are averaged per neuron (over raters and
repeats), then over neurons, per (model, method). These are our raters' ratings of our run's
descriptions, never the paper's: each row says so, with the number of neurons, ratings and
raters and the spread (SD of the per-neuron means). The explorer's ratings carry no human
summaries, so Table 3's cosine and BERTScore columns stay "not run" here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import polars as pl

from and_toolkit.dissect.icl import ICL_SIMILARITY
from and_toolkit.experiments.adjectives import KEY, require_columns
from and_toolkit.experiments.paper import TABLE3
from and_toolkit.experiments.qualitative import BERTSCORE_NOTE, HumanEvalConfig
from and_toolkit.experiments.rows import result_key, result_row
from and_toolkit.records.models import ResultRow

DESCRIBED_SIMILARITY: Final[Mapping[str, str]] = MappingProxyType(
    {"DB": "cos_cubed", "TAB": "wpmi", "ICL": ICL_SIMILARITY[1]})
"""Similarity function whose rank-0 concept is a closed method's description (Table 6, the
annotation sheet, the explorer's rating mode): the paper's best AST functions in Table 7."""

NO_SUMMARY_NOTE = ("not run: explorer ratings carry no human summaries (the cosine compares a "
                   "description with a rater's own summary)")


def rating_table(ratings: pl.DataFrame, config: HumanEvalConfig,
                 paper_models: Mapping[str, str], source: str = "ratings.parquet"
                 ) -> pl.DataFrame:
    """Table 3's rating column from Rating rows, per (model, method).

    Args:
        ratings: Rating frame (``model, layer, unit, method, rating, rater``).
        config: methods reported (in order) and the experiment id.
        paper_models: target id -> the paper model it stands for; the paper's values (AST
            neurons) go beside models standing for ``AST`` only.
        source: file name quoted in the notes.

    Returns:
        ResultRow frame, ``model`` = rated model, ``group`` = method, x null. Metrics:
        ``rating`` (mean over neurons of each neuron's mean rating, 1-5, beside the paper's),
        ``rating_sd`` (SD over neurons of those means, ddof 1; null under two neurons),
        ``n_rating`` (neurons), ``n_ratings`` (ratings), ``n_raters`` (distinct raters),
        ``cos`` and ``bertscore`` (null, not run). A method nobody rated gets a null rating
        with the note "no ratings".

    Raises:
        ValueError: missing columns or an empty frame.
    """
    require_columns(ratings, [*KEY, "method", "rating", "rater"], "ratings")
    if ratings.height == 0:
        raise ValueError("ratings: no rows (Table 3 falls back to 'not run' without ratings)")
    exp, rows = config.experiment, []
    for model in sorted(ratings["model"].unique().to_list()):
        of_model = ratings.filter(pl.col("model") == model)
        for method in config.methods:
            rated = of_model.filter(pl.col("method") == method)
            per_neuron = rated.group_by(KEY).agg(pl.col("rating").cast(pl.Float64).mean())
            paper = TABLE3.get(method) if paper_models.get(model) == "AST" else None
            n, n_raters = per_neuron.height, rated["rater"].n_unique()
            mean = float(per_neuron["rating"].mean()) if n else None  # type: ignore[arg-type]
            sd = float(per_neuron["rating"].std(ddof=1)) if n > 1 else None  # type: ignore[arg-type]
            note = (f"our {n_raters} rater(s) in the explorer ({source}), {rated.height} "
                    f"rating(s) of {n} neuron(s); not the paper's annotators" if n
                    else f"no ratings of {method} in {source}")
            rows += [
                result_row(exp, result_key(model, method, "rating"), "rating", mean,
                           model=model, group=method,
                           paper_value=paper.rating if paper else None, note=note),
                result_row(exp, result_key(model, method, "rating_sd"), "rating_sd", sd,
                           model=model, group=method,
                           note="SD over neurons of the per-neuron mean rating"),
                result_row(exp, result_key(model, method, "n_rating"), "n_rating", float(n),
                           model=model, group=method),
                result_row(exp, result_key(model, method, "n_ratings"), "n_ratings",
                           float(rated.height), model=model, group=method),
                result_row(exp, result_key(model, method, "n_raters"), "n_raters",
                           float(n_raters), model=model, group=method),
                result_row(exp, result_key(model, method, "cos"), "cos", None, model=model,
                           group=method, paper_value=paper.cos if paper else None,
                           note=NO_SUMMARY_NOTE),
                result_row(exp, result_key(model, method, "bertscore"), "bertscore", None,
                           model=model, group=method,
                           paper_value=paper.bertscore if paper else None, note=BERTSCORE_NOTE),
            ]
    return ResultRow.frame(rows)
