"""Numbers and spreads the findings read from result frames, and how per-target verdicts combine.

Pure functions over ResultRow frames (no I/O). The spreads are the ones the results carry:

* seed spread (Fig 4): the largest difference between seeds of one curve at one budget, from
  rows whose key holds ``seed=<n>`` (``fig4b`` itself or the ``fig4_seeds`` table);
* class spread (Table 4): the standard error over target classes (``r_minus_a_se`` rows).

Adjective-based frames may carry two variants (captions only, the paper's setting, and captions
+ our acoustic descriptors); :func:`captions_only` keeps the first when both are present: a row
belongs to the descriptor variant when its key, group or series mentions "descriptor" and not
"no descriptor" / "without descriptor".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

from and_toolkit.report.context import Verdict

__all__ = ["TargetVerdict", "binomial_se", "captions_only", "cells", "combine", "fig5_fits", "fig6_slopes",
           "fmt", "fmt_p", "per_target_text", "reason", "seed_curves", "untested_targets"]

_SEED = re.compile(r"seed\s*=\s*(\d+)")
_WITH_DESCRIPTORS = re.compile(r"(?<!no[ _-])(?<!without[ _-])descriptor", re.IGNORECASE)


@dataclass(frozen=True)
class TargetVerdict:
    """The verdict of a claim on one target and the numbers behind it."""

    target: str
    verdict: Verdict
    numbers: str


def fmt(v: float | None, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals ("—" for missing values, no "-0.00")."""
    if v is None or not np.isfinite(v):
        return "—"
    r = round(float(v), digits)
    return f"{0.0 if r == 0 else r:.{digits}f}"


def fmt_p(v: float | None) -> str:
    """A p-value in two significant digits."""
    return "—" if v is None or not np.isfinite(v) else f"{v:.2g}"


def reason(df: pl.DataFrame | None) -> str:
    """The first 'not run: ...' note of a frame, or a generic reason."""
    if df is None or df.height == 0:
        return "no result rows"
    notes = [n for n in df["note"].to_list() if n.startswith("not run")]
    return notes[0][len("not run"):].lstrip(": ") if notes else "no values"


def binomial_se(p: float, n: int | None) -> float:
    """Standard error of a proportion ``p`` over ``n`` items (0 when ``n`` is unknown)."""
    return float(np.sqrt(max(p * (1 - p), 0.0) / n)) if n else 0.0


def untested_targets(df: pl.DataFrame | None, tested: Iterable[str]) -> list[str]:
    """"<model> (not run: <why>)" for each model of ``df`` outside ``tested`` whose rows are all
    "not run" (e.g. a target left out of ``experiments.pruning_models``)."""
    if df is None or df.height == 0:
        return []
    done = set(tested)
    out = []
    for model in sorted({m for m in df["model"].to_list() if m and m not in done}):
        notes = df.filter(pl.col("model") == model)["note"].to_list()
        if notes and all(n.startswith("not run") for n in notes):
            out.append(f"{model} ({notes[0]})")
    return out


def cells(df: pl.DataFrame | None, metric: str,
          series: str | None = None) -> dict[tuple[str, str], float]:
    """``{(model, group): value}`` of the non-null rows of one metric (x null; one series)."""
    if df is None:
        return {}
    sub = df.filter((pl.col("metric") == metric) & pl.col("value").is_not_null()
                    & pl.col("x").is_null())
    if series is not None:
        sub = sub.filter(pl.col("series") == series)
    return {(m, g): float(v) for m, g, v in sub.select("model", "group", "value").iter_rows()}


def captions_only(df: pl.DataFrame | None) -> tuple[pl.DataFrame | None, str]:
    """The captions-only rows of an adjective-based frame and a label of the variant used."""
    if df is None or df.height == 0:
        return df, ""
    text = df["key"] + "|" + df["group"] + "|" + df["series"]
    desc = pl.Series([bool(_WITH_DESCRIPTORS.search(t)) for t in text.to_list()], dtype=pl.Boolean)
    if desc.all():
        return df, "captions + descriptors (no captions-only variant in the results)"
    if desc.any():
        return df.filter(~desc), "captions only"
    return df, ""


def seed_curves(frames: Iterable[pl.DataFrame | None],
                criteria: tuple[str, ...]) -> dict[tuple[str, str], dict[int, dict[float, float]]]:
    """Per-seed accuracies ``{(model, criterion): {seed: {budget: accuracy}}}``.

    A row counts when its key, series or metric holds ``seed=<n>`` and a key segment, its group
    or its series names a criterion (a group like ``"4b · basic_adj"`` counts too); the budget
    is ``x`` or, if null, the last number-like key segment (e.g. ``0004.0``). Budget 0 (the
    unpruned model) and rows of other metrics than accuracy / ``seed=<n>`` are skipped.
    """
    out: dict[tuple[str, str], dict[int, dict[float, float]]] = {}
    for df in frames:
        if df is None or df.height == 0:
            continue
        sub = df.filter(pl.col("value").is_not_null()
                        & (pl.col("metric").is_in(["accuracy", "top1"])
                           | pl.col("metric").str.starts_with("seed=")))
        cols = sub.select("key", "model", "group", "series", "metric", "x", "value")
        for key, model, group, series, metric, x, v in cols.iter_rows():
            parts = key.split("/")
            seed = next((m.group(1) for t in (*parts, series, metric)
                         if (m := _SEED.fullmatch(t)) is not None), None)
            names = {*parts, group, series, group.split(" \u00b7 ")[-1]}
            crit = next((c for c in criteria if c in names), None)
            if seed is None or crit is None:
                continue
            budget = x
            if budget is None:
                nums = [p for p in parts if re.fullmatch(r"\d+(\.\d+)?", p)]
                budget = float(nums[-1]) if nums else None
            if budget is None or budget <= 0:
                continue
            out.setdefault((model, crit), {}).setdefault(int(seed), {})[budget] = float(v)
    return out


def fig5_fits(df: pl.DataFrame | None) -> tuple[dict[str, tuple[float, float]], str]:
    """``{model: (slope, p)}`` of Fig 5's per-neuron fit and the fit series used (one whose name
    mentions relative depth if present, else ``per_neuron``)."""
    if df is None:
        return {}, ""
    fits = df.filter(pl.col("group") == "fit")
    names = sorted(fits["series"].unique().to_list())
    if not names:
        return {}, ""
    chosen = next((s for s in names if "relative" in s and "per_neuron" in s),
                  next((s for s in names if "relative" in s),
                       "per_neuron" if "per_neuron" in names else names[0]))
    sub = fits.filter(pl.col("series") == chosen)
    slope, p = cells(sub, "slope"), cells(sub, "p_value")
    return {m: (v, p[(m, g)]) for (m, g), v in slope.items() if (m, g) in p}, chosen


def fig6_slopes(df: pl.DataFrame | None) -> tuple[dict[str, float], str, bool]:
    """Per-model slope (% / x unit) of Fig 6's max-cluster-support curve of one clustering, the
    clustering, and whether every model's curve is constant (a degenerate rule: not used)."""
    if df is None:
        return {}, "", False
    sub = df.filter((pl.col("group") == "max_cluster_support") & pl.col("x").is_not_null()
                    & pl.col("value").is_not_null())
    series = sorted(sub["series"].unique().to_list())
    if not series:
        return {}, "", False
    chosen = "k=11" if "k=11" in series else series[0]
    out, flat = {}, []
    for (m,), part in sub.filter(pl.col("series") == chosen).group_by(["model"]):
        if part["value"].n_unique() == 1:
            flat.append(str(m))
        if part.height >= 2 and part["x"].n_unique() >= 2:
            out[str(m)] = float(stats.linregress(part["x"].to_numpy(),
                                                 part["value"].to_numpy()).slope)
    degenerate = bool(flat) and len(flat) == sub.filter(
        pl.col("series") == chosen)["model"].n_unique()
    return ({} if degenerate else out), chosen, degenerate


def combine(per_target: list[TargetVerdict], missing: list[str]) -> Verdict:
    """Overall verdict of a claim meant for every target.

    Any target "does not hold" -> "does not hold"; else any "inconclusive" -> "inconclusive";
    else every target holds -> "holds", downgraded to "partially tested" when a method or
    figure the claim needs did not run (``missing``). No target at all -> "not run".
    """
    verdicts = [t.verdict for t in per_target]
    if not verdicts:
        return "not run"
    if "does not hold" in verdicts:
        return "does not hold"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "partially tested" if missing else "holds"


def per_target_text(per_target: list[TargetVerdict], labels: Mapping[str, str]) -> str:
    """"Holds for: a. Does not hold for: b. Inconclusive for: c." (only non-empty groups)."""
    parts = []
    for verdict in ("holds", "does not hold", "inconclusive"):
        names = [labels.get(t.target, t.target) for t in per_target if t.verdict == verdict]
        if names:
            parts.append(f"{verdict.capitalize()} for: {', '.join(names)}.")
    return " ".join(parts)
