"""Audio machine unlearning: paper Table 4 and Fig 10 (Sec 4.3, Appendix F; reference §7).

For each target class c, a strategy selects hidden neurons; the model is evaluated with their
outputs zeroed (the classifier layer is never pruned). Strategies (OCP, DB, TAB, Random), their
rankings and the count-matched selection are defined in
:mod:`and_toolkit.experiments.unlearning_masks`; OCP's noun/class matching rules in
:mod:`and_toolkit.experiments.ocp`. Random is compared with the *unpruned* model (compat: the
authors' baseline is pruned too, giving ΔA = ΔR = 0).

Metrics use the raw logit of each clip's own class (reference §7): with m_c'(z) the mean over
test clips of class c' of z_c',  a_c = m_c(z^(c)) − m_c(z),  r_c = mean_{c'≠c} [m_c'(z^(c)) −
m_c'(z)],  ΔA = mean_c a_c,  ΔR = mean_c r_c, and the gap ΔR − ΔA = mean_c (r_c − a_c): how
much more the target class's own logit drops than the other classes' (positive = selective
forgetting). The paper's Table 4 column is headed "ΔA−ΔR" but holds ΔR − ΔA in all 12 cells
(AST OCP: ΔA −10.73, ΔR −6.83, printed +3.90); we use ΔR − ΔA everywhere.

Each strategy runs twice: at its *natural* count and at the *matched* count (every strategy
prunes k_c neurons for class c, the first of its own ranking). A class for which a strategy
prunes nothing is excluded from that strategy's means (flagged in the notes, counted in
``classes_pruned``). Masks (:data:`Mask`) are indexed by neuron id; the authors' mask-row-order
bug (reference §7, §15 item 14) is reproduced only with ``mask_row_order_compat``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from and_toolkit.experiments.masks import (
    Evaluate,
    EvaluateMany,
    FloatArray,
    accuracy,
    empty_mask,
    evaluate_masks,
    hidden_layers,
)
from and_toolkit.experiments.ocp import (
    LemmaFn,
    WordSimilarity,
    describe_hits,
    rule_label,
    simple_lemma,
)
from and_toolkit.experiments.paper import (
    FIG10_NOTEBOOK_AST_WATER_DROPS,
    TABLE4,
    TABLE4_NOTEBOOK_AST_OCP_PRUNED,
)
from and_toolkit.experiments.rows import KeyPart, result_key, result_row
from and_toolkit.experiments.unlearning_masks import (
    Selection,
    Strategy,
    UnlearningConfig,
    matched_counts,
    select_masks,
    select_ranked,
    selection_note,
    units_mask,
)
from and_toolkit.records.models import ResultRow

__all__ = [
    "COUNTS", "Strategy", "UnlearningConfig", "clip_targets", "fig10", "own_logit_means",
    "select_masks", "split_table4", "table4", "unlearning_metrics",
]

COUNTS = ("natural_count", "matched_count")
"""``series`` of Table 4's summary rows: each strategy at its natural and at the matched count."""

# ----- metrics -------------------------------------------------------------------------------
def clip_targets(test_clips: pl.DataFrame, class_names: Sequence[str]) -> npt.NDArray[np.int64]:
    """Target ids [n_test] of the test clips (rows in logits order), checked against names.

    Raises:
        ValueError: a target outside ``class_names`` or a label that is not its class name.
    """
    t = test_clips["target"].to_numpy().astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= len(class_names)):
        raise ValueError(f"test_clips.target: ids must lie in [0, {len(class_names)})")
    bad = [(lab, int(i)) for lab, i in zip(test_clips["label"].to_list(), t, strict=True)
           if lab != class_names[i]]
    if bad:
        raise ValueError(f"test_clips.label: labels disagree with class_names[target]: {bad[:5]}")
    return t


def own_logit_means(logits: FloatArray, targets: npt.NDArray[np.int64],
                    n_classes: int) -> FloatArray:
    """Mean own-class raw logit per class: ``m[c] = mean_{i: t_i=c} logits[i, c]``.

    Returns:
        float64 [n_classes]; NaN for classes without test clips.
    """
    own = logits[np.arange(targets.size), targets]
    sums = np.bincount(targets, weights=own, minlength=n_classes)
    counts = np.bincount(targets, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def unlearning_metrics(before: FloatArray, after: Mapping[int, FloatArray]) -> dict[str, Any]:
    """ΔA, ΔR and per-class a_c / r_c from own-logit means.

    Args:
        before: own-logit means [n_classes] of the unpruned model (NaN = no clips).
        after: ``{target class id c: own-logit means [n_classes] of the model pruned for c}``.

    Returns:
        ``{"delta_a", "delta_r", "a": {c: a_c}, "r": {c: r_c}}``.
    """
    a: dict[int, float] = {}
    r: dict[int, float] = {}
    for c, m in after.items():
        d = m - before
        a[c] = float(d[c])
        rest = np.delete(d, c)
        r[c] = float(np.nanmean(rest)) if np.isfinite(rest).any() else float("nan")
    return {"delta_a": float(np.mean(list(a.values()))),
            "delta_r": float(np.mean(list(r.values()))), "a": a, "r": r}


# ----- experiments ---------------------------------------------------------------------------
def _prepare(layer_sizes: Mapping[str, int], class_names: Sequence[str], test_clips: pl.DataFrame,
             config: UnlearningConfig) -> tuple[dict[str, int], list[str], npt.NDArray[np.int64]]:
    names = list(class_names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"class_names: must be non-empty and unique, got {len(names)} names")
    hidden = hidden_layers(layer_sizes, config.classifier_layer)
    if not hidden:
        raise ValueError("layer_sizes: no hidden layer besides the classifier")
    return hidden, names, clip_targets(test_clips, names)


def _row(experiment: str, parts: tuple[KeyPart, ...], config: UnlearningConfig, group: str,
         series: str, x: float | None, metric: str, value: float | None, paper: float | None,
         note: str) -> dict[str, Any]:
    """One row of ``config.model``, key ``<model>/<parts...>``."""
    return result_row(experiment, result_key(config.model, *parts), metric, value,
                      model=config.model, group=group, series=series, x=x, paper_value=paper,
                      note=note)


def _targets(names: list[str], t: npt.NDArray[np.int64],
             config: UnlearningConfig) -> tuple[list[str], int]:
    wanted = list(dict.fromkeys(config.target_classes or names))
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"config.target_classes: unknown class names {unknown}")
    present = set(t.tolist())
    targets = [c for c in wanted if names.index(c) in present]
    if not targets:
        raise ValueError("test_clips: no test clip of any target class")
    clash = sorted(set(targets) & set(COUNTS))
    if clash:
        raise ValueError(f"class_names: {clash} collide with Table 4's series {COUNTS}")
    return targets, len(wanted) - len(targets)


def _chosen(sel: Selection, count: str, k: Mapping[str, int]) -> dict[str, tuple[list[Any], str]]:
    """``{class: (units pruned, why excluded or "")}`` of one strategy at one count."""
    out: dict[str, tuple[list[Any], str]] = {}
    for c, ranked in sel.ranked.items():
        n = sel.natural[c]
        if n == 0:
            out[c] = ([], "pruned nothing: excluded from the means")
        elif count == "natural_count":
            out[c] = (ranked[:n], "")
        elif len(ranked) < k[c]:
            out[c] = ([], f"ranks only {len(ranked)} neurons < matched count {k[c]}: excluded")
        else:
            out[c] = (ranked[: k[c]], "")
    return out


def split_table4(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(strategy summary rows, per-class rows) of a :func:`table4` frame (``table4`` /
    ``table4_classes`` in the report)."""
    summary = pl.col("series").is_in(list(COUNTS))
    return frame.filter(summary), frame.filter(~summary)


def _summary(met: dict[str, Any] | None, n_all: list[int], n_inc: list[int], acc_ref: float,
             accs: list[float], count: str) -> dict[str, float | None]:
    gaps = [] if met is None else [met["r"][j] - met["a"][j] for j in met["a"]]
    mean_gap = float(np.mean(gaps)) if gaps else None
    se = float(np.std(gaps, ddof=1) / np.sqrt(len(gaps))) if len(gaps) >= 2 else None
    return {
        "avg_pruned": float(np.mean(n_all if count == "natural_count" else n_inc or [0])),
        "target_classes": float(len(n_all)), "classes_pruned": float(len(n_inc)),
        "delta_a": None if met is None else met["delta_a"],
        "delta_r": None if met is None else met["delta_r"],
        "r_minus_a": mean_gap, "r_minus_a_se": se,
        "r_minus_a_per_100": None if mean_gap is None else 100 * mean_gap / float(np.mean(n_inc)),
        "acc_before": acc_ref, "acc_after": float(np.mean(accs)) if accs else None}


def table4(concepts: pl.DataFrame, layer_sizes: Mapping[str, int], class_names: Sequence[str],
           test_clips: pl.DataFrame, evaluate: Evaluate, config: UnlearningConfig,
           not_run: Mapping[str, str] | None = None, *, lemma_fn: LemmaFn = simple_lemma,
           similarity: WordSimilarity | None = None,
           evaluate_many: EvaluateMany | None = None) -> pl.DataFrame:
    """Table 4 at natural and matched counts: Avg #pruned, ΔA, ΔR, ΔR − ΔA, accuracies.

    The unpruned baseline and every distinct non-empty mask are evaluated once.

    Args:
        concepts: ConceptSet frame: open rows (OCP nouns) and hidden-layer closed rows (DB/TAB).
        layer_sizes: ``{module path: n_units}`` of the prunable layers in model order; the
            classifier may be included (it is never pruned).
        class_names: ``class_names[j]`` = name of class j (= logits column j).
        test_clips: ProbeClip frame of the test clips, rows in logits-row order.
        evaluate: see :data:`Evaluate`.
        config: see :class:`UnlearningConfig`.
        not_run: ``{strategy: reason}`` for strategies whose inputs are missing; their summary
            rows get null values and note ``"not run: <reason>"``.
        lemma_fn / similarity: OCP matching (``lemma`` / ``meaning`` rules).
        evaluate_many: optional batched evaluation (see :data:`EvaluateMany`).

    Returns:
        ResultRow frame, experiment ``"table4"`` (split by :func:`split_table4`). Summary rows:
        ``group`` = strategy, ``series`` ∈ :data:`COUNTS`, metrics ``avg_pruned`` (natural:
        mean over all targets, zeros included; matched: mean k_c over included classes),
        ``target_classes``, ``classes_pruned`` (included classes), ``delta_a``, ``delta_r``,
        ``r_minus_a`` (ΔR − ΔA, raw logits), ``r_minus_a_se`` (standard error over classes
        of r_c − a_c),
        ``r_minus_a_per_100`` (100 · (ΔR − ΔA) / mean pruned count), ``acc_before``,
        ``acc_after`` (fractions; after = mean over included classes); paper values on the
        natural rows. Per-class rows (``series`` = class): ``n_pruned``, ``a_c``, ``r_c``,
        ``acc_after`` and the same with suffix ``_matched``; excluded classes have null
        a_c / r_c / acc_after and a note saying why.

    Raises:
        ValueError: bad class names / targets / test clips, missing inputs of a strategy that is
            not in ``not_run``, or malformed logits.
    """
    hidden, names, t = _prepare(layer_sizes, class_names, test_clips, config)
    targets, skipped = _targets(names, t, config)
    not_run = dict(not_run or {})
    strategies = list(dict.fromkeys(config.strategies))
    run = [s for s in strategies if s not in not_run]
    sel: dict[str, Selection] = {
        s: select_ranked(s, concepts, hidden, names, targets, config, lemma_fn, similarity)
        for s in run}
    k = matched_counts(sel, targets, config.matched_count)
    chosen: dict[tuple[str, str], dict[str, tuple[list[Any], str]]] = {
        (s, n): _chosen(sel[s], n, k) for s in run for n in COUNTS}
    jobs = [(s, n, c) for s in run for n in COUNTS for c in targets if chosen[(s, n)][c][0]]
    masks = [units_mask(hidden, chosen[(s, n)][c][0], s, config) for s, n, c in jobs]
    logits = evaluate_masks([empty_mask(hidden), *masks], evaluate, evaluate_many, len(t))
    if logits[0].shape[1] != len(names):
        raise ValueError(f"evaluate: {logits[0].shape[1]} logits columns for {len(names)} classes")
    base = logits[0]
    after: dict[tuple[str, str, str], FloatArray] = dict(zip(jobs, logits[1:], strict=True))
    rows: list[dict[str, Any]] = []
    for s in strategies:
        paper = TABLE4.get((config.paper_model, s)) if config.paper_model else None
        refs: dict[str, float | None] = {}
        if paper is not None:
            refs = {"avg_pruned": paper.avg_pruned, "delta_a": paper.delta_a,
                    "delta_r": paper.delta_r, "r_minus_a": paper.r_minus_a}
        for n in COUNTS:
            if s not in run:
                why = f"not run: {not_run[s]}"
                rows += [_row("table4", (s, n, m), config, s, n, None, m, None,
                              refs.get(m) if n == "natural_count" else None, why)
                         for m in ("avg_pruned", "delta_a", "delta_r", "r_minus_a")]
                continue
            rows += _strategy_rows(s, n, chosen[(s, n)], after, base, t, names, config,
                                   refs if n == "natural_count" else {},
                                   selection_note(s, n, config, len(targets), skipped,
                                                 chosen[(s, n)]))
        if s in run:
            rows += _class_rows(s, sel[s], chosen, after, base, t, names, config, targets)
    return ResultRow.frame(rows)


def _ref_logits(s: str, n: str, chosen: Mapping[str, tuple[list[Any], str]],
                after: Mapping[tuple[str, str, str], FloatArray], base: FloatArray,
                config: UnlearningConfig) -> FloatArray:
    inc = [c for c, (u, _) in chosen.items() if u]
    compat = s == "Random" and n == "natural_count" and config.random_prunes_baseline and inc
    return after[(s, n, inc[0])] if compat else base


def _strategy_rows(s: str, n: str, chosen: Mapping[str, tuple[list[Any], str]],
                   after: Mapping[tuple[str, str, str], FloatArray], base: FloatArray,
                   t: npt.NDArray[np.int64], names: list[str], config: UnlearningConfig,
                   refs: Mapping[str, float | None], note: str) -> list[dict[str, Any]]:
    inc = [c for c, (u, _) in chosen.items() if u]
    ref = _ref_logits(s, n, chosen, after, base, config)
    before_m = own_logit_means(ref, t, len(names))
    met = unlearning_metrics(before_m, {names.index(c): own_logit_means(after[(s, n, c)], t,
                                                                        len(names))
                                        for c in inc}) if inc else None
    vals = _summary(met, [len(u) for u, _ in chosen.values()], [len(chosen[c][0]) for c in inc],
                    accuracy(ref, t), [accuracy(after[(s, n, c)], t) for c in inc], n)
    return [_row("table4", (s, n, m), config, s, n, None, m, v, refs.get(m), note)
            for m, v in vals.items()]


def _class_rows(s: Strategy, sel: Selection, chosen: Mapping[tuple[str, str], Any],
                after: Mapping[tuple[str, str, str], FloatArray], base: FloatArray,
                t: npt.NDArray[np.int64], names: list[str], config: UnlearningConfig,
                targets: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    C = len(names)
    for n in COUNTS:
        suffix = "" if n == "natural_count" else "_matched"
        ref_m = own_logit_means(_ref_logits(s, n, chosen[(s, n)], after, base, config), t, C)
        for c in targets:
            units, why = chosen[(s, n)][c]
            j = names.index(c)
            nb = (TABLE4_NOTEBOOK_AST_OCP_PRUNED.get(c) if config.paper_model == "AST"
                  and s == "OCP" and n == "natural_count" else None)
            cnote = "paper_value: authors' AST notebook (noun substring)" if nb is not None else ""
            if s == "OCP" and n == "natural_count":
                hits = sel.hits.get(c, {})
                words = f"matched nouns: {describe_hits(hits)}" if hits else "no noun matches"
                cnote = "; ".join(p for p in (words, cnote) if p)
            if units:
                z = after[(s, n, c)]
                m = unlearning_metrics(ref_m, {j: own_logit_means(z, t, C)})
                per = {"a_c": m["a"][j], "r_c": m["r"][j], "acc_after": accuracy(z, t)}
            else:
                per = dict.fromkeys(("a_c", "r_c", "acc_after"))
            rows.append(_row("table4", (s, c, "n_pruned" + suffix), config, s, c, None,
                             "n_pruned" + suffix, float(len(units)),
                             None if nb is None else float(nb), "; ".join(
                                 p for p in (cnote, why) if p)))
            rows += [_row("table4", (s, c, metric + suffix), config, s, c, None, metric + suffix,
                          v, None, why) for metric, v in per.items()]
    return rows


def fig10(concepts: pl.DataFrame, layer_sizes: Mapping[str, int], class_names: Sequence[str],
          test_clips: pl.DataFrame, evaluate: Evaluate, config: UnlearningConfig, *,
          lemma_fn: LemmaFn = simple_lemma, similarity: WordSimilarity | None = None,
          evaluate_many: EvaluateMany | None = None) -> pl.DataFrame:
    """Fig 10: per-class mean own-class logit before / after pruning for one target class.

    Args: as :func:`table4`; the target and strategy are ``config.fig10_target`` /
        ``config.fig10_strategy`` (natural count).

    Returns:
        ResultRow frame, experiment ``"fig10"``: one ``n_pruned`` row (``series`` = target,
        ``x`` null, note: the OCP rule and matched nouns); if it is > 0, per class with test
        clips (``series`` = class, ``x`` = position when sorted by change ascending, 0 = largest
        drop) metrics ``own_logit_before``, ``own_logit_after``, ``change`` (raw logits).
        Nothing is plotted when the strategy prunes nothing. ``paper_value``: read-offs of the
        authors' AST notebook when ``paper_model == "AST"`` (the paper's figure is
        BEATs-finetuned and prints no numbers).

    Raises:
        ValueError: the target is not a class or has no test clip; see :func:`table4`.
    """
    hidden, names, t = _prepare(layer_sizes, class_names, test_clips, config)
    target, s = config.fig10_target, config.fig10_strategy
    if target not in names or names.index(target) not in set(t.tolist()):
        raise ValueError(f"config.fig10_target: {target!r} is not a class with test clips")
    sel = select_ranked(s, concepts, hidden, names, [target], config, lemma_fn, similarity)
    units = sel.ranked[target][: sel.natural[target]]
    ast = config.paper_model == "AST"
    note = "paper_value: authors' AST notebook read-off" if ast else ""
    count_note = note if ast and target == "water_drops" else ""
    how = [rule_label(config.ocp_match, config.ocp_threshold, config.ocp_encoder,
                      config.ocp_pos)] if s == "OCP" else []
    if s == "OCP":
        hits = sel.hits.get(target, {})
        how.append(f"matched nouns: {describe_hits(hits)}" if hits else "no noun matches")
    if not units:
        how.append(f"{s} prunes nothing for {target}: nothing to plot")
    rows = [_row("fig10", (s, target, "n_pruned"), config, s, target, None, "n_pruned",
                 float(len(units)), 2651.0 if ast and target == "water_drops" else None,
                 "; ".join(p for p in (*how, count_note) if p))]
    if not units:
        return ResultRow.frame(rows)
    mask = units_mask(hidden, units, s, config)
    base, after = evaluate_masks([empty_mask(hidden), mask], evaluate, evaluate_many, len(t))
    b, a = own_logit_means(base, t, len(names)), own_logit_means(after, t, len(names))
    order = sorted((j for j in range(len(names)) if np.isfinite(b[j])),
                   key=lambda j: (a[j] - b[j], names[j]))
    for pos, j in enumerate(order):
        ref = FIG10_NOTEBOOK_AST_WATER_DROPS.get(names[j]) if ast and target == "water_drops" \
            else None
        for metric, v, p in (("own_logit_before", b[j], None if ref is None else ref[0]),
                             ("own_logit_after", a[j], None if ref is None else ref[1]),
                             ("change", a[j] - b[j], None if ref is None else ref[1] - ref[0])):
            rows.append(_row("fig10", (s, target, names[j], metric), config, s, names[j],
                             float(pos), metric, float(v), p, note if ref is not None else ""))
    return ResultRow.frame(rows)
