"""Compare two :class:`~and_toolkit.compare.snapshot.Snapshot` s record by record.

Every comparison is a lazy Polars join of A's and B's canonical frames that keeps only rows
that differ at all (list inequality, rank inequality, score outside tolerance); those few rows
are collected together (``pl.collect_all``) and only they are examined in Python (Jaccard,
near-ties, point differences). Records of neurons present in one run only are not compared
(the neuron is reported as added / removed instead).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import polars as pl

from and_toolkit.compare.closed import closed_changes, closed_queries
from and_toolkit.compare.report import (
    CHANGE_KINDS,
    CHANGES_SCHEMA,
    RESULTS_SCHEMA,
    DiffReport,
    ProbeDiff,
    empty,
)
from and_toolkit.compare.snapshot import KEY, NEURON_PARTS, Snapshot
from and_toolkit.compare.ties import clip_set_change
from and_toolkit.compare.tolerance import Tolerance, close
from and_toolkit.errors import DataError

SIDE_KIND = {"high": "top_clips", "low": "bottom_clips"}
SUMMARY_KIND = {"high": "summary_high", "low": "summary_low"}
EXAMPLES = 5
"""Clip ids listed per side when probes differ."""


def diff_snapshots(a: Snapshot, b: Snapshot, tolerance: Tolerance) -> DiffReport:
    """Everything that changed from snapshot ``a`` to snapshot ``b`` beyond ``tolerance``.

    Args:
        a, b: the "before" and "after" snapshots.
        tolerance: see :class:`~and_toolkit.compare.tolerance.Tolerance`.

    Returns:
        A :class:`DiffReport`; ``report.changed`` is False when the two agree within tolerance.
    """
    if a.only != b.only:
        raise ValueError(f"snapshots restricted to different parts: {a.only} vs {b.only}")
    probe = _probe_diff(a, b)
    neurons_a, neurons_b = _collect([a.neurons, b.neurons], a, b)
    common = neurons_a.join(neurons_b, on=KEY, how="semi").lazy()
    notes: list[str] = []  # the probe's own line says when probes differ

    queries: dict[str, pl.LazyFrame] = {}
    if a.extremes is not None and b.extremes is not None and (probe.same or not probe.compared):
        queries["extremes"] = _list_query(a.extremes, b.extremes, [*KEY, "side"],
                                          ["clip_ids", "values"], "clip_ids", common)
    if a.summaries is not None and b.summaries is not None:
        queries["summaries"] = _list_query(a.summaries, b.summaries, [*KEY, "side"],
                                           ["points"], "points", common)
    if a.calibrated is not None and b.calibrated is not None:
        queries["calibrated"] = _list_query(a.calibrated, b.calibrated, KEY, ["kept"], "kept",
                                            common)
    if a.open is not None and b.open is not None:
        queries["open"] = _list_query(_open_lists(a.open), _open_lists(b.open), KEY,
                                      ["concepts"], "concepts", common)
    if a.closed is not None and b.closed is not None:
        queries.update(closed_queries(a.closed, b.closed, common, tolerance))
    if a.results is not None and b.results is not None:
        queries["results"] = _results_query(a.results, b.results)
    collected = dict(zip(queries, _collect(list(queries.values()), a, b), strict=True))

    excused: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    if "extremes" in collected:
        rows += _extremes_rows(collected["extremes"], tolerance, excused)
    if "summaries" in collected:
        rows += _points_rows(collected["summaries"], "points",
                             lambda r: SUMMARY_KIND[r["side"]])
    if "calibrated" in collected:
        rows += _points_rows(collected["calibrated"], "kept", lambda r: "calibrated")
    if "open" in collected:
        rows += _points_rows(collected["open"], "concepts", lambda r: "open_concepts")
    closed_frames = [collected[k] for k in ("closed_ranks", "closed_scores") if k in collected]
    if len(closed_frames) == 2:
        rows += closed_changes(closed_frames[0], closed_frames[1], tolerance, excused)

    presence = [
        neurons_b.join(neurons_a, on=KEY, how="anti").with_columns(
            kind=pl.lit("neuron_added"), detail=pl.lit(""), before=pl.lit("absent"),
            after=pl.lit("present"), delta=pl.lit(None, pl.Float64)),
        neurons_a.join(neurons_b, on=KEY, how="anti").with_columns(
            kind=pl.lit("neuron_removed"), detail=pl.lit(""), before=pl.lit("present"),
            after=pl.lit("absent"), delta=pl.lit(None, pl.Float64)),
    ]
    order = {k: i for i, k in enumerate(CHANGE_KINDS)}
    changes = (pl.concat([*(f.select(list(CHANGES_SCHEMA)).cast(CHANGES_SCHEMA)  # type: ignore[arg-type]
                            for f in presence),
                          pl.DataFrame(rows, schema=CHANGES_SCHEMA)])
               .with_columns(_order=pl.col("kind").replace_strict(order, return_dtype=pl.Int32))
               .sort([*KEY, "_order", "detail"]).drop("_order"))
    results = (_results_rows(collected["results"], tolerance) if "results" in collected
               else empty(RESULTS_SCHEMA))

    only_a, only_b = sorted(a.present - b.present), sorted(b.present - a.present)
    for name, side, other in ((only_a, "A", "B"), (only_b, "B", "A")):
        if name:
            notes.append(f"only {side} holds {', '.join(name)}: not compared "
                         f"({other} has no such records)")
    layers_a = set(neurons_a.select("model", "layer").unique().iter_rows())
    layers_b = set(neurons_b.select("model", "layer").unique().iter_rows())
    models_a, models_b = {m for m, _ in layers_a}, {m for m, _ in layers_b}
    neurons_compared = a.only is None or bool(a.only & NEURON_PARTS)
    return DiffReport(
        a=a.label, b=b.label, tolerance=tolerance, probe=probe,
        only=None if a.only is None else tuple(sorted(a.only)),
        neurons_a=neurons_a.height if neurons_compared else None,
        neurons_b=neurons_b.height if neurons_compared else None,
        models_added=tuple(sorted(models_b - models_a)),
        models_removed=tuple(sorted(models_a - models_b)),
        layers_added=tuple(sorted(layers_b - layers_a)),
        layers_removed=tuple(sorted(layers_a - layers_b)),
        records_only_a=tuple(only_a), records_only_b=tuple(only_b),
        excused={k: v for k, v in sorted(excused.items()) if v},
        notes=tuple(notes), changes=changes, results=results)


def _collect(lfs: list[pl.LazyFrame], a: Snapshot, b: Snapshot) -> list[pl.DataFrame]:
    """``pl.collect_all``; a file whose rows cannot be read (corrupt data pages, a missing
    column) is bad input: DataError naming both sources, one line."""
    try:
        return pl.collect_all(lfs)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot read the records of {a.label} or {b.label}: {first}") from None


# ----- probe ------------------------------------------------------------------------------------
def _probe_diff(a: Snapshot, b: Snapshot) -> ProbeDiff:
    if a.probe is None or b.probe is None:
        why = ("--only" if a.only is not None and "probe" not in a.only
               else "a run holds no probe.parquet")
        return ProbeDiff(compared=False, not_compared=why, same=True, clips_a=0, clips_b=0,
                         only_a=0, only_b=0, reordered=False)
    pa, pb = _collect([p.sort("index").select("dataset", "clip_id") for p in
                       (a.probe, b.probe)], a, b)
    ids_a = [f"{d}/{c}" for d, c in pa.iter_rows()]
    ids_b = [f"{d}/{c}" for d, c in pb.iter_rows()]
    if ids_a == ids_b:
        return ProbeDiff(compared=True, same=True, clips_a=len(ids_a), clips_b=len(ids_b),
                         only_a=0, only_b=0, reordered=False)
    sa, sb = set(ids_a), set(ids_b)
    return ProbeDiff(
        compared=True, same=False, clips_a=len(ids_a), clips_b=len(ids_b),
        only_a=len(sa - sb), only_b=len(sb - sa), reordered=sa == sb,
        examples_only_a=tuple(sorted(sa - sb)[:EXAMPLES]),
        examples_only_b=tuple(sorted(sb - sa)[:EXAMPLES]))


# ----- lists of labels (clip sets, points, open concepts) ---------------------------------------
def _open_lists(lf: pl.LazyFrame) -> pl.LazyFrame:
    """One row per neuron: its kept open concepts as a list, in rank order."""
    return (lf.sort([*KEY, "rank", "concept"]).group_by(KEY, maintain_order=True)
            .agg(pl.col("concept").alias("concepts")))


def _list_query(lfa: pl.LazyFrame, lfb: pl.LazyFrame, on: list[str], cols: list[str],
                compared: str, common: pl.LazyFrame) -> pl.LazyFrame:
    """Rows of common neurons whose list column ``compared`` differs as a set (lazy).

    Columns: ``on``, each of ``cols`` (A) and ``<col>_b`` (B); a row missing on one side has
    nulls there.
    """
    joined = (lfa.select(*on, *cols)
              .join(lfb.select(*on, *cols), on=on, how="full", coalesce=True, suffix="_b")
              .join(common, on=KEY, how="semi"))
    return joined.filter(pl.col(compared).list.sort()
                         .ne_missing(pl.col(f"{compared}_b").list.sort()))


def _text(items: Iterable[str], sep: str = ", ") -> str:
    out = sep.join(items)
    return out if out else "(none)"


def _extremes_rows(df: pl.DataFrame, tol: Tolerance, excused: dict[str, int]
                   ) -> list[dict[str, Any]]:
    rows = []
    for r in df.iter_rows(named=True):
        ids_a, ids_b = r["clip_ids"] or [], r["clip_ids_b"] or []
        change = clip_set_change(ids_a, r["values"] or [], ids_b, r["values_b"] or [],
                                 tol.activation_tol, descending=r["side"] == "high")
        kind = SIDE_KIND[r["side"]]
        if change.effective >= tol.jaccard and set(ids_a) != set(ids_b):
            excused[kind] = excused.get(kind, 0) + 1
            continue
        if change.effective >= tol.jaccard:
            continue
        rows.append({**{k: r[k] for k in KEY}, "kind": kind,
                     "detail": f"Jaccard {change.jaccard:.2f}",
                     "before": _text(ids_a), "after": _text(ids_b),
                     "delta": 1.0 - change.effective})
    return rows


def _points_rows(df: pl.DataFrame, col: str, kind_of: Any) -> list[dict[str, Any]]:
    rows = []
    for r in df.iter_rows(named=True):
        pa, pb = r[col] or [], r[f"{col}_b"] or []
        set_a, set_b = set(pa), set(pb)
        removed = [p for p in pa if p not in set_b]
        added = [p for p in pb if p not in set_a]
        if not removed and not added:
            continue
        rows.append({**{k: r[k] for k in KEY}, "kind": kind_of(r),
                     "detail": f"{len(removed)} removed, {len(added)} added",
                     "before": _text(removed, " | "), "after": _text(added, " | "),
                     "delta": None})
    return rows


# ----- results ----------------------------------------------------------------------------------
def _results_query(ra: pl.LazyFrame, rb: pl.LazyFrame) -> pl.LazyFrame:
    """Result rows whose value differs at all, or that one run lacks (lazy)."""
    on = ["experiment", "key"]
    joined = ra.join(rb, on=on, how="full", coalesce=True, suffix="_b")
    missing = pl.col("metric").is_null() | pl.col("metric_b").is_null()
    return joined.filter(missing | pl.col("value").ne_missing(pl.col("value_b"))
                         | (pl.col("value").is_nan() != pl.col("value_b").is_nan()))


def _results_rows(df: pl.DataFrame, tol: Tolerance) -> pl.DataFrame:
    rows = []
    for r in df.iter_rows(named=True):
        base = {"experiment": r["experiment"], "key": r["key"],
                "model": r["model"] if r["model"] is not None else r["model_b"],
                "metric": r["metric"] if r["metric"] is not None else r["metric_b"]}
        x, y = r["value"], r["value_b"]
        if r["metric_b"] is None:
            rows.append({**base, "change": "removed", "before": x, "after": None, "delta": None})
        elif r["metric"] is None:
            rows.append({**base, "change": "added", "before": None, "after": y, "delta": None})
        elif tol.results and not close(x, y, tol.result_atol, tol.result_rtol):
            delta = y - x if x is not None and y is not None else None
            rows.append({**base, "change": "value", "before": x, "after": y, "delta": delta})
    return pl.DataFrame(rows, schema=RESULTS_SCHEMA).sort(["experiment", "key"])
