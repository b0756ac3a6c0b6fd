"""The paper's five claims re-tested on a run's result frames (pure functions, no I/O).

Each ``claim_*`` function reads the ResultRow frames of the experiments stage and returns a
:class:`~and_toolkit.report.context.Finding` whose evidence states the test, the numbers and for
which targets the claim holds. Verdicts (:data:`~and_toolkit.report.context.Verdict`): per
target ``holds`` / ``does not hold`` / ``inconclusive`` (the difference lies within the seed or
class spread the results carry, or too few classes were tested), combined by
:func:`~and_toolkit.report.evidence.combine`; ``partially tested`` when a method or figure the
claim needs did not run and the tested part holds; ``not run`` (with the recorded reason) when
nothing could be tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from and_toolkit.experiments.last_layer import TAB_MODEL_NOTE
from and_toolkit.report.context import Finding, Verdict
from and_toolkit.report.evidence import (
    TargetVerdict,
    binomial_se,
    captions_only,
    cells,
    combine,
    fig5_fits,
    fig6_slopes,
    fmt,
    fmt_p,
    per_target_text,
    reason,
    seed_curves,
    untested_targets,
)

SUPERVISED = ("AST", "BEATs-finetuned")
FROZEN = ("BEATs-frozen",)
ALPHA = 0.05
CLASS_SE = 2.0
"""Claim 3: a gap difference within this many standard errors (over classes) is inconclusive."""
Results = Mapping[str, pl.DataFrame]


@dataclass(frozen=True)
class ModelFacts:
    """What the claims need to know about a target besides its results.

    Attributes:
        paper_model: the paper model it stands for ("AST", "BEATs-finetuned", "BEATs-frozen").
        test_accuracy: top-1 accuracy on the test fold (fraction), None if unknown.
        n_test: clips in the test fold (the denominator of ``test_accuracy``), None if unknown.
        n_classes: classifier neurons (the denominator of Table 2's top-1), None if unknown.
    """

    paper_model: str
    test_accuracy: float | None = None
    n_test: int | None = None
    n_classes: int | None = None


def _label(model: str, facts: Mapping[str, ModelFacts]) -> str:
    pm = facts[model].paper_model if model in facts else ""
    return f"{model} ({pm})" if pm and pm != model else model


def _finding(claim: str, section: str, test: str, per: list[TargetVerdict], missing: list[str],
             numbers: str, facts: Mapping[str, ModelFacts], paper: str,
             verdict: Verdict | None = None) -> Finding:
    labels = {t.target: _label(t.target, facts) for t in per}
    verdict = verdict or combine(per, missing)
    parts = [f"Test: {test}", numbers, per_target_text(per, labels)]
    if missing:
        parts.append(f"Not tested: {'; '.join(missing)}.")
    parts.append(f"Paper: {paper}")
    return Finding(claim=claim, verdict=verdict, section=section,
                   evidence=" ".join(p for p in parts if p))


def _worst(outcomes: list[Verdict]) -> Verdict:
    if "does not hold" in outcomes:
        return "does not hold"
    return "inconclusive" if "inconclusive" in outcomes else "holds"


def _tab_model_caveat(df: pl.DataFrame | None) -> str:
    """" <TAB model line>." from TAB's Table 2 notes when a model trained here made TAB's rows
    (the experiment stage appends "TAB model: ..." to them), else ""."""
    if df is None or df.is_empty():
        return ""
    notes = df.filter(pl.col("group") == "TAB")["note"].to_list()
    line = next((n[n.index(TAB_MODEL_NOTE):] for n in notes if TAB_MODEL_NOTE in n), "")
    return f" {line}." if line else ""


# ----- claim 1 ----------------------------------------------------------------------------------
def claim_db_best(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(1) DB beats TAB and ICL on the last layer (Table 2: top-1, ties broken by top-5)."""
    claim = "Description-based (DB) identification beats TAB and ICL on the last layer."
    test = ("per target, DB's (top-1, top-5) % on the classifier neurons (Table 2, best "
            "similarity function) exceeds TAB's and ICL's, top-1 first; an exact tie is "
            "inconclusive (one deterministic run: no seed or class spread).")
    df = results.get("table2")
    top1, top5 = cells(df, "top1"), cells(df, "top5")
    models = sorted(m for m, g in top1 if g == "DB")
    if not models:
        db_rows = df.filter(pl.col("group") == "DB") if df is not None else None
        return Finding(claim=claim, verdict="not run", section="table2",
                       evidence=f"DB not run: {reason(db_rows)}")
    missing = [f"{o} (not run: {reason(df.filter(pl.col('group') == o))})"
               for o in ("TAB", "ICL") if df is not None
               and any((m, o) not in top1 for m in models)]
    per, parts = [], []
    for m in models:
        db = (top1[(m, "DB")], top5.get((m, "DB"), -1.0))
        bits = [f"DB {fmt(db[0], 1)}/{fmt(db[1], 1)}"]
        outcomes: list[Verdict] = []
        for other in ("TAB", "ICL"):
            if (m, other) not in top1:
                bits.append(f"{other} not run")
                continue
            o = (top1[(m, other)], top5.get((m, other), -1.0))
            outcomes.append("holds" if db > o else "does not hold" if db < o else "inconclusive")
            bits.append(f"{other} {fmt(o[0], 1)}/{fmt(o[1], 1)}")
        parts.append(f"{_label(m, facts)}: " + ", ".join(bits))
        if outcomes:
            per.append(TargetVerdict(m, _worst(outcomes), parts[-1]))
    numbers = "top-1/top-5 %: " + "; ".join(parts) + "."
    if not per:
        return Finding(claim=claim, verdict="not run", section="table2",
                       evidence=f"{numbers} Neither TAB nor ICL ran ({reason(df)}).")
    numbers += _tab_model_caveat(df)
    return _finding(claim, "table2", test, per, missing, numbers, facts,
                    "AST DB 100 vs TAB 96, ICL 72.")


# ----- claim 2 ----------------------------------------------------------------------------------
def claim_tracks_accuracy(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(2) Dissection accuracy tracks model accuracy: pairs of models whose test accuracies and
    Table 2 top-1 both differ beyond their uncertainty are ordered the same way by each method
    (no such discordant pair, at least one concordant)."""
    claim = "Last-layer dissection accuracy tracks the target model's accuracy."
    test = (f"for each method, a pair of targets counts when their test accuracies differ by "
            f"more than {CLASS_SE:g} standard errors of the difference (binomial over the test "
            f"clips) and their Table 2 top-1 by more than {CLASS_SE:g} standard errors "
            "(binomial over the classifier neurons; unpaired, so conservative); it is "
            "concordant when both go the same way. A discordant pair breaks the claim; with no "
            "concordant pair it is inconclusive; pairs within either uncertainty count as "
            "neither.")
    df = results.get("table2")
    top1 = cells(df, "top1")
    acc = {m: f.test_accuracy for m, f in facts.items() if f.test_accuracy is not None}
    unknown = sorted(m for m in acc if facts[m].n_test is None or facts[m].n_classes is None)
    concordant = discordant = close = 0
    lines, bad = [], []
    for method in sorted({g for _, g in top1}):
        ms = sorted(m for m, g in top1 if g == method and m in acc)
        if len(ms) < 2:
            continue
        for i, a in enumerate(ms):
            for b in ms[i + 1:]:
                da, dt = acc[a] - acc[b], top1[(a, method)] - top1[(b, method)]
                se_a = np.hypot(binomial_se(acc[a], facts[a].n_test),
                                binomial_se(acc[b], facts[b].n_test))
                se_t = 100 * np.hypot(binomial_se(top1[(a, method)] / 100, facts[a].n_classes),
                                      binomial_se(top1[(b, method)] / 100, facts[b].n_classes))
                if abs(da) <= CLASS_SE * se_a or abs(dt) <= CLASS_SE * se_t:
                    close += 1
                elif da * dt > 0:
                    concordant += 1
                else:
                    discordant += 1
                    bad.append(f"{method} {a} vs {b}")
        lines.append(f"{method} top-1 " + ", ".join(f"{m} {fmt(top1[(m, method)], 1)}"
                                                  for m in ms))
    if not lines:
        why = "fewer than two models with both test accuracy and a last-layer result"
        return Finding(claim=claim, verdict="not run", section="table2",
                       evidence=f"{why} ({reason(df)})" if df is not None else why)
    ran = {g for _, g in top1}
    missing = [f"{m} (not run: {reason(df.filter(pl.col('group') == m))})"
               for m in ("DB", "TAB", "ICL") if m not in ran and df is not None]
    accs = ", ".join(f"{_label(m, facts)} {fmt(100 * acc[m], 1)}"
                     + (f" (n={facts[m].n_test})" if facts[m].n_test else "")
                     for m in sorted(acc))
    numbers = (f"test accuracy %: {accs}; " + "; ".join(lines)
               + f". {concordant} concordant, {discordant} discordant, {close} within the "
               "uncertainty" + (f" ({', '.join(bad)} discordant)." if bad else ".")
               + (f" Unknown test or class counts for {', '.join(unknown)}: their differences "
                  "count without an uncertainty." if unknown else ""))
    verdict: Verdict = ("does not hold" if discordant else "inconclusive" if not concordant
                        else "partially tested" if missing else "holds")
    return _finding(claim, "table2", test, [], missing, numbers, facts,
                    "AST > BEATs-finetuned > BEATs-frozen for every method.", verdict)


# ----- claim 3 ----------------------------------------------------------------------------------
def _table4_stats(df: pl.DataFrame | None, count: str) -> dict[tuple[str, str], dict[str, float]]:
    """``{(model, strategy): {metric: value}}`` of Table 4's summary rows at one count."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    if df is None:
        return out
    for metric in ("r_minus_a", "r_minus_a_se", "r_minus_a_per_100", "classes_pruned",
                   "target_classes", "avg_pruned"):
        for k, v in cells(df, metric, count).items():
            out.setdefault(k, {})[metric] = v
    return {k: v for k, v in out.items() if "r_minus_a" in v}


def _gap_text(st: Mapping[str, float]) -> str:
    se = st.get("r_minus_a_se")
    classes = (f", {int(st['classes_pruned'])}/{int(st['target_classes'])} classes pruned"
               if "classes_pruned" in st and "target_classes" in st else "")
    return (f"{fmt(st['r_minus_a'], 3)}" + (f" ± {fmt(se, 3)}" if se is not None else "")
            + f" (per 100 pruned {fmt(st.get('r_minus_a_per_100'), 3)}{classes})")


def claim_ocp_gap(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(3) OCP has the largest ΔR − ΔA of the Table 4 strategies, for every model (tested at the
    matched count when present, else at the natural count)."""
    claim = ("Open-concept pruning (OCP) makes the target class drop the most relative to the "
             "others (largest ΔR − ΔA, Table 4).")
    test = ("per target, OCP's ΔR − ΔA (mean over classes of r_c − a_c, raw logits) at the "
            "matched neuron count must exceed every other strategy's by more than "
            f"{CLASS_SE:g} standard errors of the difference (SEs over classes); inconclusive "
            "within that, or when fewer than half of the target classes have OCP-pruned neurons.")
    df = results.get("table4")
    by_count = {c: _table4_stats(df, c) for c in ("matched_count", "natural_count")}
    models = sorted({m for c in by_count.values() for m, g in c if g == "OCP"})
    if not models:
        ocp = df.filter(pl.col("group") == "OCP") if df is not None else None
        why = reason(ocp)
        if why == "no values" and ocp is not None and ocp["value"].is_not_null().any():
            why = ("no ΔR − ΔA (r_minus_a) rows per count: results of an older toolkit, "
                   "re-run the experiments stage")
        return Finding(claim=claim, verdict="not run", section="table4",
                       evidence=f"OCP not run: {why}")
    ran = {g for c in by_count.values() for _, g in c}
    missing = [f"{s} (not run: {reason(df.filter(pl.col('group') == s))})"
               for s in ("Random", "TAB", "DB") if s not in ran and df is not None]
    missing += untested_targets(df, models)
    per, parts = [], []
    for m in models:
        count = "matched_count" if (m, "OCP") in by_count["matched_count"] else "natural_count"
        st = {g: v for (mm, g), v in by_count[count].items() if mm == m}
        mine = st["OCP"]
        outcomes: list[Verdict] = []
        for g, o in sorted(st.items()):
            if g == "OCP":
                continue
            d = mine["r_minus_a"] - o["r_minus_a"]
            spread = CLASS_SE * float(np.hypot(mine.get("r_minus_a_se", np.nan),
                                               o.get("r_minus_a_se", np.nan)))
            outcomes.append("inconclusive" if not np.isfinite(spread) or abs(d) <= spread
                            else "holds" if d > 0 else "does not hold")
        few = 2 * mine.get("classes_pruned", 0) < mine.get("target_classes", 0)
        verdict: Verdict = "inconclusive" if few or not outcomes else _worst(outcomes)
        nat = {g: v for (mm, g), v in by_count["natural_count"].items() if mm == m}
        text = (f"{_label(m, facts)} at the {count.replace('_', ' ')}: "
                + "; ".join(f"{g} {_gap_text(v)}" for g, v in sorted(st.items())))
        if count == "matched_count" and nat:
            text += " — natural count: " + "; ".join(
                f"{g} {fmt(v['r_minus_a'], 3)} (avg {fmt(v.get('avg_pruned'), 1)} pruned)"
                for g, v in sorted(nat.items()))
        if few:
            text += " (fewer than half of the target classes have OCP-pruned neurons)"
        parts.append(text)
        per.append(TargetVerdict(m, verdict, text))
    numbers = "ΔR − ΔA (logit) ± SE over classes: " + ". ".join(parts) + "."
    return _finding(claim, "table4", test, per, missing, numbers, facts,
                    "AST OCP 3.90 vs Random 0.04, TAB 0.16, DB −0.23 (natural counts "
                    "2808 / 3000 / 3317 / 3317).")


# ----- claim 4 ----------------------------------------------------------------------------------
ADJ_KINDS = ("basic_adj", "high_adj")


def claim_basic_adjectives(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(4) Ablating by basic adjectives lowers accuracy more than by high-level ones (Fig 4b:
    mean accuracy over the ablation budgets > 0 %, captions-only variant when present)."""
    claim = "Basic adjectives matter more than high-level ones (Fig 4b)."
    test = ("per target, the mean top-1 accuracy over the ablation budgets > 0 % must be lower "
            "when ablating by basic adjectives than by high-level ones, by more than the seed "
            "spread (the largest difference between seeds of one curve at one budget); "
            "inconclusive within it or with fewer than two seeds.")
    df, variant = captions_only(results.get("fig4b"))
    seeds_df, _ = captions_only(results.get("fig4_seeds"))
    if df is None or df.filter(pl.col("value").is_not_null()).height == 0:
        return Finding(claim=claim, verdict="not run", section="fig4b",
                       evidence=f"Fig 4b not run: {reason(df)}")
    curves = seed_curves([df, seeds_df], ADJ_KINDS)
    sub = df.filter((pl.col("series") == "mean") & (pl.col("metric") == "accuracy")
                    & (pl.col("x") > 0) & pl.col("group").is_in(list(ADJ_KINDS)))
    means = {(m, g): (v, p) for m, g, v, p in sub.group_by("model", "group").agg(
        pl.col("value").mean(), pl.col("paper_value").mean()).iter_rows()}
    per, parts = [], []
    for m in sorted({m for m, _ in means} | {m for m, _ in curves}):
        seeds = [curves.get((m, k), {}) for k in ADJ_KINDS]
        n_seeds = min(len(s) for s in seeds)
        if n_seeds >= 1:
            vals = [float(np.mean([v for per_seed in s.values() for v in per_seed.values()]))
                    for s in seeds]
        elif all((m, k) in means and means[(m, k)][0] is not None for k in ADJ_KINDS):
            vals = [float(means[(m, k)][0]) for k in ADJ_KINDS]
        else:
            continue
        spread = max((max(v[b] for v in s.values()) - min(v[b] for v in s.values())
                      for s in seeds for b in set.intersection(*(set(v) for v in s.values()))),
                     default=float("nan")) if n_seeds >= 2 else float("nan")
        d = vals[0] - vals[1]
        verdict: Verdict = ("inconclusive" if not np.isfinite(spread) or abs(d) <= spread
                            else "holds" if d < 0 else "does not hold")
        bp, hp = (means.get((m, k), (None, None))[1] for k in ADJ_KINDS)
        paper = f" (paper {fmt(bp)} vs {fmt(hp)})" if bp is not None and hp is not None else ""
        text = (f"{_label(m, facts)}: basic {fmt(vals[0])} vs high-level {fmt(vals[1])}, "
                f"difference {fmt(d)}, seed spread {fmt(spread)} over {n_seeds} seeds{paper}")
        parts.append(text)
        per.append(TargetVerdict(m, verdict, text))
    if not per:
        return Finding(claim=claim, verdict="not run", section="fig4b",
                       evidence="no model has both basic and high-level adjective curves")
    numbers = ("mean top-1 accuracy over the ablation budgets"
               + (f" ({variant})" if variant else "") + ": " + "; ".join(parts) + ".")
    return _finding(claim, "fig4b", test, per, untested_targets(df, [t.target for t in per]),
                    numbers, facts, "AST basic 0.524 vs high-level 0.575 (3 seeds).")


# ----- claim 5 ----------------------------------------------------------------------------------
def claim_depth_narrowing(results: Results, facts: Mapping[str, ModelFacts]) -> Finding:
    """(5) Supervised models have fewer adjectives per neuron (Fig 5: slope < 0, p < 0.05) and
    fewer uninterpretable neurons (Fig 6: slope < 0) in later blocks; the frozen encoder stays
    flat (Fig 5: p >= 0.05; Fig 6: a flatter slope than every supervised model)."""
    claim = ("Supervised training narrows neurons with depth; the frozen encoder stays flat "
             "(Figs 5, 6).")
    test = (f"Fig 5 (captions-only adjectives when present): a supervised target's slope of "
            f"adjectives per neuron over depth must be < 0 with p < {ALPHA} (p >= {ALPHA}: "
            f"inconclusive), the frozen target's p >= {ALPHA}; Fig 6: supervised slopes of % "
            "uninterpretable < 0 and the frozen slope flatter than each supervised one (Fig 6 "
            "is not used when every curve is constant: a degenerate rule).")
    fig5, variant = captions_only(results.get("fig5"))
    fits, fit_series = fig5_fits(fig5)
    slopes6, clustering, degenerate6 = fig6_slopes(results.get("fig6"))
    paper_of = {m: facts.get(m, ModelFacts("")).paper_model for m in fits}
    sup = sorted(m for m in fits if paper_of[m] in SUPERVISED)
    frozen = sorted(m for m in fits if paper_of[m] in FROZEN)
    if not sup or not frozen:
        return Finding(claim=claim, verdict="not run", section="fig5",
                       evidence="needs Fig 5 fits of a supervised and a frozen target; have "
                       f"{sorted(fits) or 'none'} ({reason(results.get('fig5'))})")
    use6 = all(m in slopes6 for m in [*sup, *frozen])
    per = []
    for m in [*sup, *frozen]:
        slope, p = fits[m]
        outcomes: list[Verdict]
        if m in sup:
            outcomes = ["inconclusive" if p >= ALPHA else "holds" if slope < 0
                        else "does not hold"]
            if use6:
                outcomes.append("holds" if slopes6[m] < 0 else "does not hold")
        else:
            outcomes = ["holds" if p >= ALPHA else "does not hold"]
            if use6:
                outcomes.append("holds" if all(abs(slopes6[m]) < abs(slopes6[s]) for s in sup)
                                else "does not hold")
        per.append(TargetVerdict(m, _worst(outcomes), ""))
    xs = (fig5.filter(pl.col("x").is_not_null())["x"].to_list() if fig5 is not None else [])
    relative = "relative" in fit_series or (len(set(xs)) >= 2 and max(xs) <= 1.0)
    unit = "relative depth" if relative else "block"
    numbers = (f"Fig 5 slope (adjectives / {unit}, fit {fit_series}"
               + (f", {variant}" if variant else "") + "): "
               + ", ".join(f"{_label(m, facts)} {fmt(fits[m][0], 3)} (p={fmt_p(fits[m][1])})"
                           for m in [*sup, *frozen]))
    missing = []
    if use6:
        numbers += (f"; Fig 6 slope (% uninterpretable per x unit, {clustering}): "
                    + ", ".join(f"{m} {fmt(slopes6[m], 2)}" for m in [*sup, *frozen]))
    else:
        why = ("every curve is constant: the rule is degenerate on this data" if degenerate6
               else reason(results.get("fig6")))
        missing.append(f"Fig 6 ({why})")
    return _finding(claim, "fig5", test, per, missing, numbers + ".", facts,
                    "AST and BEATs-finetuned fall (p<0.001), BEATs-frozen flat (p>0.05); "
                    "uninterpretable AST 42→13 %, BEATs-frozen 70→68 %.")


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
