"""Reshape experiment frames into the row encoding the report draws well (docs/report.md).

The experiment functions return tidy frames with every number they compute; the report plots
rows with a non-null ``x`` and pivots the others by ``(model, group, series) x metric``. These
pure functions move secondary rows (per-seed values, per-class details, sub-layers) into compact
tables of their own and relabel ids so that keys sort in display order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import polars as pl

from and_toolkit.records.models import ResultRow

_NULL_X = pl.lit(None, dtype=pl.Float64).alias("x")


def _select(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(ResultRow.polars_schema().names())


def fig10_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Fig 10 as a dumbbell: ``group`` = class, ``series`` before / after, metric own_logit;
    the pruned-count row gets ``group`` = target class, ``series`` = strategy."""
    fig = rows.filter(pl.col("metric").is_in(["own_logit_before", "own_logit_after"]))
    fig = fig.with_columns(pl.col("series").alias("group"),
                           pl.col("metric").str.replace("own_logit_", "").alias("series"),
                           pl.lit("own_logit").alias("metric"))
    count = rows.filter(pl.col("x").is_null()).with_columns(
        pl.col("series").alias("group"), pl.col("group").alias("series"))
    return _select(pl.concat([count, fig]))


def split_fig4(rows: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Fig 4 curves (mean accuracy per criterion) and ``fig4_seeds``: per (panel, criterion,
    budget) the accuracy of every seed and the mean pruned count, as one table."""
    out: dict[str, pl.DataFrame] = {}
    for exp in ("fig4a", "fig4b", "fig4c"):
        out[exp] = rows.filter((pl.col("experiment") == exp) & (pl.col("series") == "mean")
                               & (pl.col("metric") == "accuracy"))
    seeds = rows.filter(pl.col("series").str.starts_with("seed=")
                        & (pl.col("metric") == "accuracy"))
    counts = rows.filter((pl.col("series") == "mean") & (pl.col("metric") == "n_pruned"))
    panel = pl.col("experiment").str.replace("fig", "")
    both = pl.concat([seeds.with_columns(pl.col("series").alias("metric")), counts])
    out["fig4_seeds"] = _select(both.with_columns(
        pl.lit("fig4_seeds").alias("experiment"),
        pl.format("{}/{}/{}/{}/{}", pl.col("model"), panel, pl.col("group"),
                  pl.col("x").round(2).cast(pl.String).str.zfill(6), pl.col("metric"))
        .alias("key"),
        pl.format("{} · {}", panel, pl.col("group")).alias("group"),
        pl.format("{} %", pl.col("x")).alias("series"),
        pl.lit("").alias("note"), pl.lit(None, dtype=pl.Float64).alias("paper_value"),
        _NULL_X))
    return out


def _tau(col: str) -> pl.Expr:
    return pl.col(col).str.replace("tau=", "\u03c4=")


def fig11_13_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Figs 11-13: per-block curves (panel per setting); the all-block percentages as one
    table (model, rule (clustering)) x setting; missing-caption counts only when non-zero."""
    parts = pl.col("key").str.split("/")
    k_tau = [parts.list.get(3).str.replace("K=", "").str.zfill(2),
             parts.list.get(4).str.replace("tau=", "").str.zfill(2)]
    curves = rows.filter((pl.col("metric") == "pct_uninterpretable")
                         & pl.col("x").is_not_null()).with_columns(
        _tau("group"),
        pl.format("{}/curve/{}/{}/{}/{}/{}", pl.col("model"), *k_tau, parts.list.get(2),
                  parts.list.get(1), pl.col("x").cast(pl.Int64).cast(pl.String).str.zfill(3))
        .alias("key"))
    overall = rows.filter(pl.col("metric") == "pct_uninterpretable_all").with_columns(
        pl.format("{}/all/{}/{}/{}/{}", pl.col("model"), parts.list.get(2), parts.list.get(1),
                  *k_tau).alias("key"),
        _tau("group").alias("metric"), pl.lit("all blocks").alias("group"))
    missing = rows.filter((pl.col("metric") == "n_missing_clips") & (pl.col("value") > 0))
    return _select(pl.concat([curves, overall, missing]))


def sublayer_rows(rows: pl.DataFrame, clustering: str) -> pl.DataFrame:
    """Fig 6's setting (K=5, τ=4, max cluster support) per sub-layer: (model, sub-layer) x
    block, experiment ``fig6_sublayers``."""
    sub = rows.filter((pl.col("metric") == "pct_uninterpretable_sublayer")
                      & (pl.col("group") == "K=5, tau=4")
                      & pl.col("series").str.starts_with(f"max_cluster_support ({clustering}) "))
    return _select(sub.with_columns(
        pl.lit("fig6_sublayers").alias("experiment"),
        pl.col("series").str.split(" ").list.last().alias("series"),
        pl.lit(f"max cluster support, {clustering}").alias("group"),
        pl.format("block {}", pl.col("x").cast(pl.Int64)).alias("metric"),
        pl.format("{}/{}/{}", pl.col("model"), pl.col("series").str.split(" ").list.last(),
                  pl.col("x").cast(pl.Int64).cast(pl.String).str.zfill(3)).alias("key"),
        _NULL_X))


def table8_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Table 8 with clusters in numeric order (zero-padded keys) and their sizes in the label."""
    cid = pl.col("key").str.extract(r"cluster=(\d+)").cast(pl.Int64)
    sizes = rows.filter(pl.col("metric") == "n_sentences").select(
        cid.alias("_c"), pl.col("value").cast(pl.Int64).alias("_n"))
    df = rows.with_columns(cid.alias("_c")).join(sizes, on="_c", how="left")
    label = pl.format("cluster {} ({} sentences)", pl.col("_c"), pl.col("_n"))
    parts = pl.col("key").str.split("/")
    key = pl.format("{}/cluster={}/{}", parts.list.get(0),
                    pl.col("_c").cast(pl.String).str.zfill(3),
                    parts.list.slice(2).list.join("/"))
    return _select(df.with_columns(label.alias("group"), key.alias("key")))


def table6_rows(rows: pl.DataFrame, aliases: Mapping[tuple[str, str], str]) -> pl.DataFrame:
    """Table 6 summary rows with short layer aliases (``block3.fc1``) and ``#unit``."""
    lookup = {f"{m}\0{layer}": a for (m, layer), a in aliases.items()}
    alias = pl.concat_str(pl.col("model"), pl.lit("\0"), pl.col("group")).replace_strict(
        lookup, default=pl.col("group"), return_dtype=pl.String)
    return _select(rows.with_columns(alias.alias("group"),
                                     pl.format("#{}", pl.col("series")).alias("series")))


def label_counts(labels: list[str]) -> list[str]:
    """``["dog ×3", "cat ×2"]``: labels with counts, most frequent first (ties: first seen)."""
    counts = Counter(labels)
    order = sorted(counts, key=lambda x: (-counts[x], labels.index(x)))
    return [f"{x} \u00d7{counts[x]}" if counts[x] > 1 else x for x in order]
