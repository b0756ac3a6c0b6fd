"""The report's "Explanation quality" rows (beyond the paper): detection scores against the null.

Input: ExplanationScore rows (``dissect/scoring.py``) and the neuron index (block, alias).
A description is **above chance** when its AUC is strictly above the 95th percentile of the
null AUCs of its own layer and description kind (the null: descriptions of other neurons of the
same layer, seeded shuffle); by construction about 5 % of null scores pass that bar.

Rows (experiment ``explanation_scores``; ``model`` = target id, ``group`` = description label
e.g. ``DB · cos``, ``SUM (S_h)``, ``OCP``):

* tabulated (``x`` null), ``series`` = clip side (``captions``, ``captions + descriptors``,
  ``audio``, ``audio · descriptors``), metrics ``n_scored``, ``median_auc``,
  ``null_median_auc``, ``null_iqr_auc`` (q75 - q25 of the null), ``pct_above_chance``,
  ``median_spearman``, ``null_median_spearman``;
* plotted (``x`` = block, the classifier at the last block + 1), captions alone only:
  ``median_auc`` with ``series`` ``described`` / ``null``, and ``pct_above_chance``
  (``series`` ``described``);
* a clip side that did not run: one ``median_auc`` row, value null, note ``not run: <why>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from and_toolkit.experiments.rows import Padded, result_key, result_row, tagged
from and_toolkit.records.models import NEURON_KEY, ResultRow

EXPERIMENT = "explanation_scores"
CHANCE_LEVEL = 0.95
"""Quantile of the layer's null AUCs a description must exceed to count as above chance."""
KIND_KEY = ["kind", "method", "similarity", "variant", "source"]
SIDE_LABELS: Mapping[tuple[str, str], str] = {
    ("caption", ""): "captions", ("caption", "descriptors"): "captions + descriptors",
    ("audio", ""): "audio", ("audio", "descriptors"): "audio · descriptors"}


def description_label(kind: str, method: str, similarity: str) -> str:
    """Display label of a description kind: ``DB · cos``, ``SUM (S_h)``, ``OCP``."""
    if kind == "summary":
        return f"{method} (S_h)"
    return f"{method} · {similarity}" if similarity else method


def with_chance(scores: pl.DataFrame, index: pl.DataFrame) -> pl.DataFrame:
    """Scores with ``block`` (classifier: last block + 1), ``alias``, the layer's chance bar
    ``chance_auc`` and ``above`` (auc > chance_auc; null when either is missing)."""
    last = index.group_by("model").agg((pl.col("block").max().fill_null(0) + 1).alias("_last"))
    idx = (index.join(last, on="model")
           .select(*NEURON_KEY, pl.col("alias"),
                   pl.col("block").fill_null(pl.col("_last")).cast(pl.Float64).alias("block")))
    chance = (scores.group_by(["model", "layer", *KIND_KEY])
              .agg(pl.col("null_auc").drop_nulls().quantile(CHANCE_LEVEL, "linear")
                   .alias("chance_auc")))
    return (scores.join(idx, on=list(NEURON_KEY), how="left")
            .join(chance, on=["model", "layer", *KIND_KEY], how="left")
            .with_columns((pl.col("auc") > pl.col("chance_auc")).alias("above")))


def _summary(df: pl.DataFrame) -> dict[str, float | None]:
    nul = df["null_auc"].drop_nulls()
    above = df.filter(pl.col("auc").is_not_null() & pl.col("chance_auc").is_not_null())["above"]

    def med(s: pl.Series) -> float | None:
        s = s.drop_nulls()
        return float(s.median()) if s.len() else None  # type: ignore[arg-type]

    return {
        "n_scored": float(df["auc"].drop_nulls().len()), "median_auc": med(df["auc"]),
        "null_median_auc": med(nul),
        "null_iqr_auc": (float(nul.quantile(0.75)) - float(nul.quantile(0.25))  # type: ignore[arg-type]
                         if nul.len() else None),
        "pct_above_chance": 100.0 * float(above.mean()) if above.len() else None,  # type: ignore[arg-type]
        "median_spearman": med(df["spearman"]), "null_median_spearman": med(df["null_spearman"]),
    }


def quality_rows(scores: pl.DataFrame, index: pl.DataFrame,
                 not_run: Mapping[str, str] | None = None) -> pl.DataFrame:
    """The ``explanation_scores`` ResultRow frame (module docstring).

    Args:
        scores: ExplanationScore rows.
        index: ``model, layer, unit, block, alias`` of the recorded neurons.
        not_run: ``{"audio": reason}`` when the audio side did not run.
    """
    df = with_chance(scores, index)
    rows: list[dict[str, Any]] = []
    for (model, kind, method, sim, variant, source), part in sorted(
            df.partition_by(["model", *KIND_KEY], as_dict=True).items()):
        label = description_label(str(kind), str(method), str(sim))
        side = SIDE_LABELS[(str(source), str(variant))]
        for metric, value in _summary(part).items():
            rows.append(result_row(EXPERIMENT, result_key(str(model), label, side, metric),
                                   metric, value, model=str(model), group=label, series=side))
        if (source, variant) != ("caption", ""):
            continue
        for (block,), b in sorted(part.partition_by(["block"], as_dict=True).items()):
            s = _summary(b)
            x = float(block)
            for series, metric, value in (("described", "median_auc", s["median_auc"]),
                                          ("null", "median_auc", s["null_median_auc"]),
                                          ("described", "pct_above_chance",
                                           s["pct_above_chance"])):
                rows.append(result_row(
                    EXPERIMENT, result_key(str(model), label, tagged("block", Padded(int(x), 3)), series,
                                           metric),
                    metric, value, model=str(model), group=label, series=series, x=x))
    for source, reason in sorted((not_run or {}).items()):
        rows.append(result_row(EXPERIMENT, result_key(f"{source}-side"), "median_auc", None,
                               group=f"{source}-side variant", note=f"not run: {reason}"))
    return ResultRow.frame(rows) if rows else ResultRow.empty()


def _r3(v: float | None) -> float | None:
    return None if v is None else round(float(v), 3)


def best_worst(scores: pl.DataFrame, index: pl.DataFrame, n: int = 3) -> list[dict[str, Any]]:
    """The n best- and n worst-scored neurons of every description kind (captions alone).

    Returns:
        Rows ``description kind, rank, model, neuron, description, AUC, null AUC, Spearman``;
        ``rank`` = ``best 1..n`` / ``worst 1..n``; ties by neuron key.
    """
    df = with_chance(scores, index).filter(
        (pl.col("source") == "caption") & (pl.col("variant") == "") & pl.col("auc").is_not_null())
    out: list[dict[str, Any]] = []
    for (kind, method, sim), part in sorted(df.partition_by(["kind", "method", "similarity"],
                                                           as_dict=True).items()):
        label = description_label(str(kind), str(method), str(sim))
        ranked = part.sort(["auc", *NEURON_KEY], descending=[True, False, False, False])
        picks = [(f"best {i + 1}", r) for i, r in enumerate(ranked.head(n).iter_rows(named=True))]
        tail = ranked.tail(min(n, max(ranked.height - n, 0))).reverse()
        picks += [(f"worst {i + 1}", r) for i, r in enumerate(tail.iter_rows(named=True))]
        for rank, r in picks:
            out.append({"description kind": label, "rank": rank, "model": r["model"],
                        "neuron": f"{r['alias'] or r['layer']} #{r['unit']}",
                        "description": r["description"], "AUC": _r3(r["auc"]),
                        "null AUC": _r3(r["null_auc"]), "Spearman": _r3(r["spearman"])})
    return out
