"""Closed concepts (Module A) per neuron x method x similarity: top-1, ranks, scores.

Only ranks below ``Tolerance.rank_window`` (default 5) are compared. A group (one neuron, one
method, one similarity) is examined in Python only when some concept's rank differs between
the runs; score changes beyond tolerance are found in the lazy join itself.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from and_toolkit.compare.snapshot import KEY
from and_toolkit.compare.ties import Ranked, ranked_change
from and_toolkit.compare.tolerance import Tolerance

GROUP = [*KEY, "method", "similarity"]
"""One ranked list of closed concepts."""


def score_changed(tol: Tolerance) -> pl.Expr:
    """True where ``score`` (A) and ``score_b`` (B) differ beyond the score tolerance (both
    null, equal, or both NaN: unchanged; one null: changed)."""
    a, b = pl.col("score"), pl.col("score_b")
    within = (a - b).abs() <= tol.score_atol + tol.score_rtol * pl.max_horizontal(a.abs(),
                                                                                   b.abs())
    return (pl.when(a.is_null() & b.is_null()).then(False)
            .when(a.is_null() | b.is_null()).then(True)
            .otherwise(~((a == b) | (a.is_nan() & b.is_nan()) | within)))


def closed_queries(ca: pl.LazyFrame, cb: pl.LazyFrame, common: pl.LazyFrame, tol: Tolerance
                   ) -> dict[str, pl.LazyFrame]:
    """Lazy queries over the closed concepts of A and B restricted to common neurons.

    Returns:
        ``closed_ranks``: one row per group (GROUP) where some rank differs, with the lists
        concept, rank, score (A) and rank_b, score_b (B) of its rows; ``closed_scores``: rows of concepts at the same rank in both
        runs whose score changed beyond tolerance (a concept that moved is reported by its
        top-1 / rank change instead; no rows when ``tol.scores`` is False).
    """
    cols = [*GROUP, "concept", "rank", "score"]
    window = pl.col("rank") < tol.rank_window
    joined = (ca.filter(window).select(cols)
              .join(cb.filter(window).select(cols), on=[*GROUP, "concept"], how="full",
                    coalesce=True, suffix="_b")
              .join(common, on=KEY, how="semi"))
    groups = joined.filter(pl.col("rank").ne_missing(pl.col("rank_b"))).select(GROUP).unique()
    ranks = (joined.join(groups, on=GROUP, how="semi")
             .group_by(GROUP).agg("concept", "rank", "score", "rank_b", "score_b"))
    same_rank = pl.col("rank") == pl.col("rank_b")  # moved concepts: top-1 / rank rows
    scores = joined.filter(same_rank & score_changed(tol) & pl.lit(tol.scores))
    return {"closed_ranks": ranks, "closed_scores": scores}


def _fmt(x: float | None) -> str:
    return "" if x is None else f" ({x:.6g})"


def _label(method: str, similarity: str) -> str:
    return f"{method}/{similarity}" if similarity else method


def closed_changes(ranks: pl.DataFrame, scores: pl.DataFrame, tol: Tolerance,
                   excused: dict[str, int]) -> list[dict[str, Any]]:
    """Change rows (``closed_top1``, ``closed_rank``, ``closed_score``) from the collected
    queries of :func:`closed_queries`; near-tie flips are counted into ``excused``."""
    rows: list[dict[str, Any]] = []
    for row in ranks.sort(GROUP).iter_rows():
        model, layer, unit, method, similarity, concepts, ranks_a, scores_a, ranks_b, scores_b = row
        a = _ranked(concepts, ranks_a, scores_a)
        b = _ranked(concepts, ranks_b, scores_b)
        change = ranked_change(a, b, tol.score_tol)
        excused["closed_rank"] = excused.get("closed_rank", 0) + change.excused
        base = {"model": model, "layer": layer, "unit": unit}
        label = _label(method, similarity)
        if change.top1:
            rows.append({**base, "kind": "closed_top1", "detail": label,
                         "before": _top1(a, b, tol.rank_window),
                         "after": _top1(b, a, tol.rank_window), "delta": None})
            continue
        if a.items and b.items and a.items[0] != b.items[0]:
            excused["closed_top1"] = excused.get("closed_top1", 0) + 1
        if change.moved:
            moves = ", ".join(f"{c} {_rank(a, c)}->{_rank(b, c)}" for c in change.moved)
            rows.append({**base, "kind": "closed_rank", "detail": f"{label}: {moves}",
                         "before": ", ".join(a.items), "after": ", ".join(b.items),
                         "delta": None})
    for r in scores.iter_rows(named=True):
        sa, sb = r["score"], r["score_b"]
        rows.append({"model": r["model"], "layer": r["layer"], "unit": r["unit"],
                     "kind": "closed_score",
                     "detail": f"{_label(r['method'], r['similarity'])} {r['concept']}",
                     "before": "null" if sa is None else f"{sa:.6g}",
                     "after": "null" if sb is None else f"{sb:.6g}",
                     "delta": None if sa is None or sb is None else sb - sa})
    return rows


def _top1(x: Ranked, other: Ranked, window: int) -> str:
    """``x``'s top-1 with its score, and where ``other``'s top-1 is in ``x``."""
    if not x.items:
        return "(none)"
    text = x.items[0] + _fmt(x.scores[0])
    if other.items and other.items[0] != x.items[0]:
        c = other.items[0]
        r = x.rank(c)
        where = f"not in top {window}" if r is None else f"rank {r}{_fmt(x.scores[r])}"
        text += f"; {c}: {where}"
    return text


def _rank(x: Ranked, concept: str) -> str:
    r = x.rank(concept)
    return "-" if r is None else str(r)


def _ranked(concepts: list[str], ranks: list[int | None], scores: list[float | None]
            ) -> Ranked:
    held = sorted((r, c, s) for c, r, s in zip(concepts, ranks, scores, strict=True)
                  if r is not None)
    return Ranked(tuple(c for _, c, _ in held), tuple(s for _, _, s in held))
