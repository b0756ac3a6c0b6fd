"""Reshape experiment frames into the row encoding the report draws well (docs/report.md).

The experiment functions return tidy ResultRow frames with every number they compute; the
report plots rows with a non-null ``x`` and pivots the others by ``(model, group, series) x
metric``. These pure functions move secondary rows (per-seed values, sub-layers) into compact
tables of their own and relabel groups. They read only typed columns (``experiment``, ``model``,
``group``, ``series``, ``x``, ``metric``, ``value``) and arguments, and build new keys with
:func:`~and_toolkit.experiments.rows.result_key`; no key is parsed.

Figs 11-13, Fig 6's sub-layers and Table 8 come out of their experiment functions already in
the report's encoding (``interpretability.uninterpretable_neurons``, ``clusters.cluster_words``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import polars as pl

from and_toolkit.experiments.rows import Padded, result_columns, result_key, result_row
from and_toolkit.records.models import ResultRow

__all__ = ["FIG4_PANELS", "fig10_rows", "label_counts", "split_fig4", "table6_rows"]

FIG4_PANELS: Mapping[str, str] = {"fig4a": "4a", "fig4b": "4b", "fig4c": "4c"}
"""Fig 4 experiment id -> panel label (the experiments of ``ablation.fig4``)."""
_FIG10_SIDES: Mapping[str, str] = {"own_logit_before": "before", "own_logit_after": "after"}


def fig10_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Fig 10 as a dumbbell.

    Args:
        rows: ``unlearning.fig10`` output: per class (``series``) metrics
            ``own_logit_before`` / ``own_logit_after`` / ``change`` (raw logits, x = rank by
            change) and one ``n_pruned`` row (x null, ``group`` = strategy, ``series`` =
            target class).

    Returns:
        ResultRow frame, same keys: per class ``group`` = class, ``series`` "before" /
        "after", metric "own_logit" (``change`` rows dropped); the pruned-count row with
        ``group`` = target class and ``series`` = strategy.
    """
    fig = rows.filter(pl.col("metric").is_in(list(_FIG10_SIDES)))
    fig = fig.with_columns(pl.col("series").alias("group"),
                           pl.col("metric").replace_strict(_FIG10_SIDES).alias("series"),
                           pl.lit("own_logit").alias("metric"))
    count = rows.filter(pl.col("x").is_null()).with_columns(
        pl.col("series").alias("group"), pl.col("group").alias("series"))
    return result_columns(pl.concat([count, fig]))


def split_fig4(rows: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Fig 4 curves (mean accuracy per criterion) and the ``fig4_seeds`` table.

    Args:
        rows: ``ablation.fig4`` output (experiments ``fig4a`` / ``fig4b`` / ``fig4c``; series
            "mean" or "seed=<s>"; metrics ``accuracy`` (fraction) and ``n_pruned``; x = %).

    Returns:
        ``{"fig4a", "fig4b", "fig4c"}``: the ``series == "mean"`` rows with ``x`` of metrics
        ``accuracy`` (the curve) and ``accuracy_sd`` (its spread over seeds), and every row
        with a null ``x`` (tabulated: 4c eligible counts, not-run / not-plotted criteria),
        unchanged; ``"fig4_seeds"``: per (model, panel, criterion, budget) the accuracy of
        every seed (metric = the seed's series label) and the mean pruned count (metric
        "n_pruned"),
        group "<panel> · <criterion>", series "<x> %", x null, key
        "<model>/<panel>/<criterion>/<x zero-filled to 6>/<metric>" (budgets sort
        numerically).
    """
    out: dict[str, pl.DataFrame] = {}
    for exp in FIG4_PANELS:
        curve = (pl.col("series") == "mean") & pl.col("metric").is_in(["accuracy", "accuracy_sd"])
        out[exp] = rows.filter((pl.col("experiment") == exp)
                               & (pl.col("x").is_null() | curve))
    rows = rows.filter(pl.col("x").is_not_null())
    seeds = rows.filter(pl.col("series").str.starts_with("seed=")
                        & (pl.col("metric") == "accuracy")).with_columns(
        pl.col("series").alias("metric"))
    counts = rows.filter((pl.col("series") == "mean") & (pl.col("metric") == "n_pruned"))
    table = []
    for r in pl.concat([seeds, counts]).iter_rows(named=True):
        panel, x = FIG4_PANELS[r["experiment"]], r["x"]
        table.append(result_row(
            "fig4_seeds", result_key(r["model"], panel, r["group"], Padded(round(x, 2), 6),
                                     r["metric"]),
            r["metric"], r["value"], model=r["model"], group=f"{panel} \u00b7 {r['group']}",
            series=f"{x} %"))
    out["fig4_seeds"] = ResultRow.frame(table)
    return out


def table6_rows(rows: pl.DataFrame, aliases: Mapping[tuple[str, str], str]) -> pl.DataFrame:
    """Table 6 summary rows with short layer aliases and ``#unit`` series.

    Args:
        rows: ``qualitative.qualitative_table`` rows (``group`` = layer, ``series`` = unit).
        aliases: ``{(model, layer): alias}``, e.g. ``("ast", "...layers.2.mlp.fc1"):
            "block3.fc1"``; layers without one keep their module path.

    Returns:
        The rows with ``group`` = alias and ``series`` = "#<unit>"; keys unchanged.
    """
    lookup = {f"{m}\0{layer}": a for (m, layer), a in aliases.items()}
    alias = pl.concat_str(pl.col("model"), pl.lit("\0"), pl.col("group")).replace_strict(
        lookup, default=pl.col("group"), return_dtype=pl.String)
    return result_columns(rows.with_columns(alias.alias("group"),
                                            pl.format("#{}", pl.col("series")).alias("series")))


def label_counts(labels: list[str]) -> list[str]:
    """``["dog ×3", "cat ×2"]``: labels with counts, most frequent first (ties: first seen)."""
    counts = Counter(labels)
    order = sorted(counts, key=lambda x: (-counts[x], labels.index(x)))
    return [f"{x} \u00d7{counts[x]}" if counts[x] > 1 else x for x in order]
