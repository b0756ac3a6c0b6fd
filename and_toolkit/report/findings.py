"""The paper's five claims re-tested on a run's result frames (pure functions, no I/O).

Each ``claim_*`` function reads the ResultRow frames of the experiments stage and returns a
:class:`~and_toolkit.report.context.Finding` with the numbers behind its verdict. A claim whose
rows are missing or all "not run" gets the verdict ``not run`` and the recorded reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

from and_toolkit.report.context import Finding

SUPERVISED = ("AST", "BEATs-finetuned")
FROZEN = ("BEATs-frozen",)
ALPHA = 0.05
Results = Mapping[str, pl.DataFrame]


@dataclass(frozen=True)
class ModelFacts:
    """What the claims need to know about a target besides its results.

    Attributes:
        paper_model: the paper model it stands for ("AST", "BEATs-finetuned", "BEATs-frozen").
        test_accuracy: top-1 accuracy on the test fold (fraction), None if unknown.
    """

    paper_model: str
    test_accuracy: float | None = None


def _fmt(v: float | None, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals ("—" for missing values, no "-0.00")."""
    if v is None or not np.isfinite(v):
        return "—"
    r = round(float(v), digits)
    return f"{0.0 if r == 0 else r:.{digits}f}"


def _p(v: float | None) -> str:
    """A p-value in two significant digits."""
    return "—" if v is None or not np.isfinite(v) else f"{v:.2g}"


def _reason(df: pl.DataFrame | None) -> str:
    """The first 'not run: ...' note of a frame, or a generic reason."""
    if df is None or df.height == 0:
        return "no result rows"
    notes = [n for n in df["note"].to_list() if n.startswith("not run")]
    return notes[0][len("not run"):].lstrip(": ") if notes else "no values"


def _label(model: str, facts: Mapping[str, ModelFacts]) -> str:
    pm = facts[model].paper_model if model in facts else ""
    return f"{model} ({pm})" if pm and pm != model else model


def _cells(df: pl.DataFrame, metric: str) -> dict[tuple[str, str], float]:
    """``{(model, group): value}`` of the non-null rows of one metric (x null)."""
    sub = df.filter((pl.col("metric") == metric) & pl.col("value").is_not_null()
                    & pl.col("x").is_null())
    return {(m, g): float(v) for m, g, v in sub.select("model", "group", "value").iter_rows()}


# ----- claim 1 ----------------------------------------------------------------------------------
def claim_db_best(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(1) DB beats TAB and ICL on the last layer (Table 2: top-1, ties by top-5)."""
    claim = "Description-based (DB) identification beats TAB and ICL on the last layer."
    df = results.get("table2")
    top1 = _cells(df, "top1") if df is not None else {}
    top5 = _cells(df, "top5") if df is not None else {}
    models = sorted({m for m, g in top1 if g == "DB"})
    if not models:
        db_rows = df.filter(pl.col("group") == "DB") if df is not None else None
        return Finding(claim=claim, verdict="not run", section="table2",
                       evidence=f"DB not run: {_reason(db_rows)}")
    parts, ok, compared = [], True, 0
    for m in models:
        db = (top1[(m, "DB")], top5.get((m, "DB"), -1.0))
        bits = [f"DB {_fmt(db[0], 1)}/{_fmt(db[1], 1)}"]
        for other in ("TAB", "ICL"):
            if (m, other) not in top1:
                bits.append(f"{other} not run")
                continue
            o = (top1[(m, other)], top5.get((m, other), -1.0))
            compared += 1
            ok &= db > o
            bits.append(f"{other} {_fmt(o[0], 1)}/{_fmt(o[1], 1)}")
        parts.append(f"{_label(m, facts)}: " + ", ".join(bits))
    evidence = ("top-1/top-5 %: " + "; ".join(parts)
                + ". Paper: AST DB 100 vs TAB 96, ICL 72.")
    for other in ("TAB", "ICL"):
        if not any((m, other) in top1 for m in models) and df is not None:
            why = _reason(df.filter(pl.col("group") == other))
            evidence += f" Not compared with {other} (not run: {why})."
    if not compared:
        return Finding(claim=claim, verdict="not run", section="table2",
                       evidence=evidence + f" Neither TAB nor ICL ran ({_reason(df)}).")
    return Finding(claim=claim, verdict="holds" if ok else "does not hold", section="table2",
                   evidence=evidence)


# ----- claim 2 ----------------------------------------------------------------------------------
def claim_tracks_accuracy(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(2) Dissection accuracy tracks model accuracy: every pair of models with different test
    accuracy is ordered the same way by each method's Table 2 top-1 (no discordant pair)."""
    claim = "Last-layer dissection accuracy tracks the target model's accuracy."
    df = results.get("table2")
    top1 = _cells(df, "top1") if df is not None else {}
    acc = {m: f.test_accuracy for m, f in facts.items() if f.test_accuracy is not None}
    methods = sorted({g for _, g in top1})
    concordant = discordant = 0
    lines = []
    for method in methods:
        ms = sorted(m for m, g in top1 if g == method and m in acc)
        if len(ms) < 2:
            continue
        for i, a in enumerate(ms):
            for b in ms[i + 1:]:
                da, dt = acc[a] - acc[b], top1[(a, method)] - top1[(b, method)]
                if da == 0:
                    continue
                concordant += da * dt > 0
                discordant += da * dt < 0
        lines.append(f"{method} top-1 " + ", ".join(f"{m} {_fmt(top1[(m, method)], 1)}"
                                                  for m in ms))
    if not lines:
        why = "fewer than two models with both test accuracy and a last-layer result"
        return Finding(claim=claim, verdict="not run", section="table2",
                       evidence=f"{why} ({_reason(df)})" if df is not None else why)
    accs = ", ".join(f"{_label(m, facts)} {_fmt(100 * acc[m], 1)}" for m in sorted(acc))
    evidence = (f"test accuracy %: {accs}; " + "; ".join(lines)
                + f". {concordant} concordant, {discordant} discordant model pairs. "
                "Paper: AST > BEATs-finetuned > BEATs-frozen for every method.")
    ok = discordant == 0 and concordant > 0
    return Finding(claim=claim, verdict="holds" if ok else "does not hold", section="table2",
                   evidence=evidence)


# ----- claim 3 ----------------------------------------------------------------------------------
def claim_ocp_gap(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(3) OCP has the largest ΔA − ΔR of the Table 4 strategies, for every model."""
    claim = "Open-concept pruning (OCP) gives the largest ΔA − ΔR in unlearning (Table 4)."
    df = results.get("table4")
    gap = _cells(df, "gap") if df is not None else {}
    models = sorted({m for m, g in gap if g == "OCP"})
    if not models:
        ocp = df.filter(pl.col("group") == "OCP") if df is not None else None
        return Finding(claim=claim, verdict="not run", section="table4",
                       evidence=f"OCP not run: {_reason(ocp)}")
    ok, parts = True, []
    for m in models:
        others = {g: v for (mm, g), v in gap.items() if mm == m and g != "OCP"}
        ok &= bool(others) and all(gap[(m, "OCP")] > v for v in others.values())
        cells = ", ".join(f"{g} {_fmt(v, 2)}" for g, v in sorted(others.items()))
        parts.append(f"{_label(m, facts)}: OCP {_fmt(gap[(m, 'OCP')], 2)} vs {cells or 'none'}")
    return Finding(claim=claim, verdict="holds" if ok else "does not hold", section="table4",
                   evidence="ΔA − ΔR (logit): " + "; ".join(parts)
                   + ". Paper: AST OCP 3.90 vs Random 0.04, TAB 0.16, DB −0.23.")


# ----- claim 4 ----------------------------------------------------------------------------------
def claim_basic_adjectives(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(4) Ablating by basic adjectives lowers accuracy more than by high-level ones (Fig 4b:
    mean accuracy over the ablation budgets > 0 %)."""
    claim = "Basic adjectives matter more than high-level ones (Fig 4b)."
    df = results.get("fig4b")
    if df is None or df.filter(pl.col("value").is_not_null()).height == 0:
        return Finding(claim=claim, verdict="not run", section="fig4b",
                       evidence=f"Fig 4b not run: {_reason(df)}")
    sub = df.filter((pl.col("series") == "mean") & (pl.col("metric") == "accuracy")
                    & (pl.col("x") > 0) & pl.col("group").is_in(["basic_adj", "high_adj"]))
    means = (sub.group_by("model", "group")
             .agg(pl.col("value").mean(), pl.col("paper_value").mean()).sort("model", "group"))
    look = {(m, g): (v, p) for m, g, v, p in means.iter_rows()}
    models = sorted({m for m, _ in look})
    parts, ok, tested = [], True, 0
    for m in models:
        if (m, "basic_adj") not in look or (m, "high_adj") not in look:
            continue
        (bv, bp), (hv, hp) = look[(m, "basic_adj")], look[(m, "high_adj")]
        if bv is None or hv is None:
            continue
        tested += 1
        ok &= bv < hv
        paper = f" (paper {_fmt(bp)} vs {_fmt(hp)})" if bp is not None and hp is not None else ""
        parts.append(f"{_label(m, facts)}: basic {_fmt(bv)} vs high-level {_fmt(hv)}{paper}")
    if not tested:
        return Finding(claim=claim, verdict="not run", section="fig4b",
                       evidence="no model has both basic and high-level adjective curves")
    return Finding(claim=claim, verdict="holds" if ok else "does not hold", section="fig4b",
                   evidence="mean top-1 accuracy over the ablation budgets: " + "; ".join(parts))


# ----- claim 5 ----------------------------------------------------------------------------------
def _fig5_fits(df: pl.DataFrame | None) -> dict[str, tuple[float, float]]:
    if df is None:
        return {}
    sub = df.filter((pl.col("group") == "fit") & (pl.col("series") == "per_neuron"))
    slope, p = _cells(sub, "slope"), _cells(sub, "p_value")
    return {m: (v, p[(m, g)]) for (m, g), v in slope.items() if (m, g) in p}


def _fig6_slopes(df: pl.DataFrame | None) -> tuple[dict[str, float], str]:
    """Per-model slope (% / block) of Fig 6's max-cluster-support curve of one clustering."""
    if df is None:
        return {}, ""
    sub = df.filter((pl.col("group") == "max_cluster_support") & pl.col("x").is_not_null()
                    & pl.col("value").is_not_null())
    series = sorted(sub["series"].unique().to_list())
    if not series:
        return {}, ""
    chosen = "k=11" if "k=11" in series else series[0]
    out = {}
    for (m,), part in sub.filter(pl.col("series") == chosen).group_by(["model"]):
        if part.height >= 2 and part["x"].n_unique() >= 2:
            out[str(m)] = float(stats.linregress(part["x"].to_numpy(),
                                                 part["value"].to_numpy()).slope)
    return out, chosen


def claim_depth_narrowing(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(5) Supervised models have fewer adjectives per neuron (Fig 5: slope < 0, p < 0.05) and
    fewer uninterpretable neurons (Fig 6: slope < 0) in later blocks; the frozen encoder stays
    flat (Fig 5: p >= 0.05; Fig 6: a flatter slope than every supervised model)."""
    claim = ("Supervised training narrows neurons with depth; the frozen encoder stays flat "
             "(Figs 5, 6).")
    fits = _fig5_fits(results.get("fig5"))
    slopes6, clustering = _fig6_slopes(results.get("fig6"))
    sup = sorted(m for m in fits if facts.get(m, ModelFacts("")).paper_model in SUPERVISED)
    frozen = sorted(m for m in fits if facts.get(m, ModelFacts("")).paper_model in FROZEN)
    if not sup or not frozen:
        return Finding(claim=claim, verdict="not run", section="fig5",
                       evidence="needs Fig 5 fits of a supervised and a frozen target; have "
                       f"{sorted(fits) or 'none'} ({_reason(results.get('fig5'))})")
    ok = all(fits[m][0] < 0 and fits[m][1] < ALPHA for m in sup)
    ok &= all(fits[m][1] >= ALPHA for m in frozen)
    parts = [f"{_label(m, facts)} {_fmt(fits[m][0], 3)} (p={_p(fits[m][1])})"
             for m in [*sup, *frozen]]
    evidence = "Fig 5 slope (adjectives / block): " + ", ".join(parts)
    if all(m in slopes6 for m in [*sup, *frozen]):
        ok &= all(slopes6[m] < 0 for m in sup)
        ok &= all(abs(slopes6[f]) < abs(slopes6[s]) for f in frozen for s in sup)
        evidence += (f"; Fig 6 slope (% uninterpretable / block, {clustering}): "
                     + ", ".join(f"{m} {_fmt(slopes6[m], 2)}" for m in [*sup, *frozen]))
    else:
        evidence += f"; Fig 6 not used ({_reason(results.get('fig6'))})"
    evidence += (". Paper: AST and BEATs-finetuned fall (p<0.001), BEATs-frozen flat "
                 "(p>0.05); uninterpretable AST 42→13 %, BEATs-frozen 70→68 %.")
    return Finding(claim=claim, verdict="holds" if ok else "does not hold", section="fig5",
                   evidence=evidence)


def paper_findings(results: Results, facts: Mapping[str, ModelFacts]) -> list[Finding]:
    """The paper's five claims, in order, re-tested on ``results``.

    Args:
        results: experiment id -> ResultRow frame (as written by the experiments stage).
        facts: target id -> :class:`ModelFacts`.

    Returns:
        Five findings: DB best, accuracy tracking, OCP gap, basic adjectives, depth narrowing.
    """
    return [fn(results, facts) for fn in (claim_db_best, claim_tracks_accuracy, claim_ocp_gap,
                                          claim_basic_adjectives, claim_depth_narrowing)]
