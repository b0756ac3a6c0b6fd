"""Audio machine unlearning: paper Table 4 and Fig 10 (Sec 4.3, Appendix F; reference §7).

For each target class c, a strategy selects hidden neurons; the model is evaluated with their
outputs zeroed (the classifier layer is never pruned). Selection strategies:

* ``OCP``: a neuron is pruned if one of its open concepts (nouns of its calibrated summary,
  ConceptSet rows of kind ``open`` with ``pos`` in ``ocp_pos``) matches c: ``token`` (default: the
  word equals a ``_``-separated token of the class name), ``lemma`` (same after ``lemma_fn``) or
  ``substring`` (authors' compat: the word is a substring of the class name, "use" hits
  "mouse_click").
* ``DB`` / ``TAB``: c is among the top-3 closed concepts of the neuron (DB ``cos_cubed``,
  TAB ``soft_wpmi``).
* ``Random``: ``random_count`` hidden neurons drawn with ``random.Random(random_seed)``, the same
  set for every class, compared with the *unpruned* model (compat: the authors' baseline is
  pruned too, giving ΔA = ΔR = 0).

Metrics use the raw logit of each clip's own class (reference §7): with m_c'(z) the mean over
test clips of class c' of z_c',  a_c = m_c(z^(c)) − m_c(z),  r_c = mean_{c'≠c} [m_c'(z^(c)) −
m_c'(z)],  ΔA = mean_c a_c,  ΔR = mean_c r_c.

Masks (:data:`Mask`) are indexed by neuron id; the authors' mask-row-order bug (reference §7,
§15 item 14) is reproduced only with ``mask_row_order_compat``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.experiments.masks import (
    Evaluate,
    EvaluateMany,
    FloatArray,
    Mask,
    accuracy,
    compat_row_order,
    empty_mask,
    evaluate_masks,
    hidden_layers,
    mask_from_units,
    n_pruned,
)
from and_toolkit.experiments.paper import (
    FIG10_NOTEBOOK_AST_WATER_DROPS,
    TABLE4,
    TABLE4_NOTEBOOK_AST_OCP_PRUNED,
    PaperModel,
)
from and_toolkit.experiments.rows import KeyPart, result_key, result_row
from and_toolkit.records.models import ResultRow

__all__ = [
    "Strategy", "UnlearningConfig", "clip_targets", "fig10", "ocp_matches", "own_logit_means",
    "select_masks", "simple_lemma", "table4", "unlearning_metrics",
]

Strategy = Literal["Random", "TAB", "DB", "OCP"]
LemmaFn = Callable[[str], str]


class UnlearningConfig(BaseModel):
    """Configuration of Table 4 / Fig 10.

    Attributes:
        model: target-network id (ConceptSet.model, ResultRow.model).
        classifier_layer: module path of the classifier; never pruned, its rows are ignored.
        strategies: strategies to run, in output order.
        ocp_match: OCP word/class matching; ``substring`` is the authors' rule.
        ocp_pos: ConceptSet.pos values of the open concepts OCP matches (nouns).
        ocp_kept_only: use only open concepts with verdict ``kept``.
        closed_top_k: DB/TAB prune a neuron if c is among its ``closed_top_k`` best concepts.
        db_similarity / tab_similarity: ConceptSet.similarity of the DB / TAB ranking.
        random_count: neurons pruned by Random (clamped to the hidden-neuron count).
        random_seed: seed of ``random.Random`` shuffling the hidden neurons.
        random_prunes_baseline: compat: the Random baseline is the pruned model (ΔA = ΔR = 0).
        mask_row_order_compat: compat: Random prunes units 0..k_l−1 of each layer.
        target_classes: classes to unlearn (None: every class with test clips).
        fig10_target / fig10_strategy: Fig 10's target class and strategy.
        paper_model: paper model whose numbers go into ``paper_value``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    classifier_layer: str = Field(min_length=1)
    strategies: tuple[Strategy, ...] = ("Random", "TAB", "DB", "OCP")
    ocp_match: Literal["token", "lemma", "substring"] = "token"
    ocp_pos: tuple[str, ...] = ("NOUN",)
    ocp_kept_only: bool = True
    closed_top_k: int = Field(default=3, ge=1)
    db_similarity: str = "cos_cubed"
    tab_similarity: str = "soft_wpmi"
    random_count: int = Field(default=3000, ge=0)
    random_seed: int = 20
    random_prunes_baseline: bool = False
    mask_row_order_compat: bool = False
    target_classes: tuple[str, ...] | None = None
    fig10_target: str = "water_drops"
    fig10_strategy: Strategy = "OCP"
    paper_model: PaperModel | None = None

    @classmethod
    def reference(cls, **kwargs: Any) -> UnlearningConfig:
        """The authors' behaviour (substring OCP, pruned Random baseline, mask-row order)."""
        return cls(**{"ocp_match": "substring", "random_prunes_baseline": True,
                      "mask_row_order_compat": True, **kwargs})


# ----- selection -----------------------------------------------------------------------------
def simple_lemma(word: str) -> str:
    """Rule-based English noun singular (default lemmatiser of ``ocp_match="lemma"``).

    Lower-case; ``-ies`` -> ``-y``; ``-sses``/``-xes``/``-zes``/``-ches``/``-shes`` drop ``es``;
    any other ``-s`` (except ``-ss``/``-us``/``-is``) drops ``s``. "birds" -> "bird".
    """
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "xes", "zes", "ches", "shes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def ocp_matches(word: str, class_name: str, match: Literal["token", "lemma", "substring"],
                lemma_fn: LemmaFn = simple_lemma) -> bool:
    """Whether open concept ``word`` names class ``class_name`` (case-insensitive).

    ``token``: word equals a ``_``-separated token of the class; ``lemma``: the same after
    ``lemma_fn`` on both; ``substring``: word is a substring of the class string (authors').
    """
    w, c = word.lower(), class_name.lower()
    if match == "substring":
        return w in c
    tokens = c.split("_")
    if match == "token":
        return w in tokens
    return lemma_fn(w) in {lemma_fn(t) for t in tokens}


def _check_layers(df: pl.DataFrame, hidden: Mapping[str, int], what: str) -> None:
    unknown = sorted(set(df["layer"].unique().to_list()) - set(hidden))
    if unknown:
        raise ValueError(f"{what}: ConceptSet.layer {unknown[:5]} not in layer_sizes")


def select_masks(strategy: Strategy, concepts: pl.DataFrame, hidden: Mapping[str, int],
                 class_names: Sequence[str], targets: Sequence[str], config: UnlearningConfig,
                 lemma_fn: LemmaFn = simple_lemma) -> dict[str, Mask]:
    """Pruning mask of ``strategy`` for each target class.

    Args:
        strategy: Random, TAB, DB or OCP.
        concepts: ConceptSet frame (rows of other models and of the classifier are ignored).
        hidden: hidden layers ``{module path: n_units}`` in model order (no classifier).
        class_names: all class names (concept names of DB/TAB must be among them).
        targets: the target classes.
        config: see :class:`UnlearningConfig`.
        lemma_fn: word -> lemma, used by ``ocp_match="lemma"``.

    Returns:
        ``{target class: Mask}``.

    Raises:
        ValueError: no ConceptSet rows for the strategy, unknown concept names or layers, or a
            unit outside its layer.
    """
    if strategy == "Random":
        keys = [(layer, u) for layer, n in hidden.items() for u in range(n)]
        random.Random(config.random_seed).shuffle(keys)
        chosen = keys[: config.random_count]
        mask = mask_from_units(hidden, [k[0] for k in chosen], [k[1] for k in chosen])
        if config.mask_row_order_compat:
            mask = compat_row_order(mask)
        return {c: mask for c in targets}
    mine = concepts.filter((pl.col("model") == config.model)
                           & (pl.col("layer") != config.classifier_layer))
    what = f"ConceptSet model={config.model!r} strategy={strategy}"
    if strategy == "OCP":
        sub = mine.filter((pl.col("kind") == "open") & pl.col("pos").is_in(config.ocp_pos))
        if config.ocp_kept_only:
            sub = sub.filter(pl.col("verdict") == "kept")
        words = sub["concept"].unique().to_list()
        hits = {c: [w for w in words if ocp_matches(w, c, config.ocp_match, lemma_fn)]
                for c in targets}
    else:
        sim = config.db_similarity if strategy == "DB" else config.tab_similarity
        sub = mine.filter((pl.col("kind") == "closed") & (pl.col("method") == strategy)
                          & (pl.col("similarity") == sim) & (pl.col("rank") < config.closed_top_k))
        unknown = sorted(set(sub["concept"].unique().to_list()) - set(class_names))
        if unknown:
            raise ValueError(f"{what}: concept names not among the class names: {unknown[:10]}")
        hits = {c: [c] for c in targets}
        what += f" similarity={sim!r}"
    if sub.height == 0:
        raise ValueError(f"{what}: no ConceptSet rows; pass a reason in not_run if not run")
    _check_layers(sub, hidden, what)
    out: dict[str, Mask] = {}
    for c in targets:
        sel = sub.filter(pl.col("concept").is_in(hits[c])).select("layer", "unit").unique()
        out[c] = mask_from_units(hidden, sel["layer"].to_list(), sel["unit"].to_list(), what)
    return out


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


def table4(concepts: pl.DataFrame, layer_sizes: Mapping[str, int], class_names: Sequence[str],
           test_clips: pl.DataFrame, evaluate: Evaluate, config: UnlearningConfig,
           not_run: Mapping[str, str] | None = None, *, lemma_fn: LemmaFn = simple_lemma,
           evaluate_many: EvaluateMany | None = None) -> pl.DataFrame:
    """Table 4: per strategy Avg #pruned, ΔA, ΔR, ΔA − ΔR, accuracy before / after.

    All masks of all strategies are built first; the unpruned baseline and every distinct mask
    are evaluated once (Random's single mask once for all classes).

    Args:
        concepts: ConceptSet frame: open rows (OCP nouns) and hidden-layer closed rows (DB/TAB).
        layer_sizes: ``{module path: n_units}`` of the prunable layers in model order; the
            classifier may be included (it is never pruned).
        class_names: ``class_names[j]`` = name of class j (= logits column j).
        test_clips: ProbeClip frame of the test clips, rows in logits-row order.
        evaluate: see :data:`Evaluate`.
        config: see :class:`UnlearningConfig`.
        not_run: ``{strategy: reason}`` for strategies whose inputs are missing; their rows get
            null values and note ``"not run: <reason>"``.
        lemma_fn: lemmatiser for ``ocp_match="lemma"``.
        evaluate_many: optional batched evaluation (see :data:`EvaluateMany`).

    Returns:
        ResultRow frame, experiment ``"table4"``. Per strategy (``group``, ``series`` ""):
        ``avg_pruned``, ``delta_a``, ``delta_r``, ``gap`` (ΔA − ΔR; raw logits),
        ``acc_before``, ``acc_after`` (fractions; after = mean over targets); per target class
        (``series`` = class): ``n_pruned``, ``a_c``, ``r_c``, ``acc_after``.

    Raises:
        ValueError: bad class names / targets / test clips, missing inputs of a strategy that is
            not in ``not_run``, or malformed logits.
    """
    hidden, names, t = _prepare(layer_sizes, class_names, test_clips, config)
    not_run = dict(not_run or {})
    wanted = list(dict.fromkeys(config.target_classes or names))
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"config.target_classes: unknown class names {unknown}")
    present = set(t.tolist())
    targets = [c for c in wanted if names.index(c) in present]
    if not targets:
        raise ValueError("test_clips: no test clip of any target class")
    skipped = len(wanted) - len(targets)
    strategies = list(dict.fromkeys(config.strategies))
    run = [s for s in strategies if s not in not_run]
    sel = {s: select_masks(s, concepts, hidden, names, targets, config, lemma_fn) for s in run}
    flat = [sel[s][c] for s in run for c in targets]
    logits = evaluate_masks([empty_mask(hidden), *flat], evaluate, evaluate_many, len(t))
    if logits[0].shape[1] != len(names):
        raise ValueError(f"evaluate: {logits[0].shape[1]} logits columns for {len(names)} classes")
    base, after_all = logits[0], iter(logits[1:])
    rows: list[dict[str, Any]] = []
    for s in strategies:
        paper = TABLE4.get((config.paper_model, s)) if config.paper_model else None
        refs: dict[str, float | None] = dict.fromkeys((
            "avg_pruned", "delta_a", "delta_r", "gap", "acc_before", "acc_after"))
        if paper is not None:
            refs.update(avg_pruned=paper.avg_pruned, delta_a=paper.delta_a,
                        delta_r=paper.delta_r, gap=paper.gap)
        if s not in run:
            rows += [_row("table4", (s, m), config, s, "", None, m, None, p,
                          f"not run: {not_run[s]}") for m, p in refs.items()]
            continue
        after = {c: next(after_all) for c in targets}
        ref = after[targets[0]] if s == "Random" and config.random_prunes_baseline else base
        before_m = own_logit_means(ref, t, len(names))
        met = unlearning_metrics(before_m, {names.index(c): own_logit_means(z, t, len(names))
                                            for c, z in after.items()})
        counts = {c: n_pruned(sel[s][c]) for c in targets}
        accs = {c: accuracy(z, t) for c, z in after.items()}
        vals = {"avg_pruned": float(np.mean(list(counts.values()))), "delta_a": met["delta_a"],
                "delta_r": met["delta_r"], "gap": met["delta_a"] - met["delta_r"],
                "acc_before": accuracy(ref, t), "acc_after": float(np.mean(list(accs.values())))}
        note = _note(s, config, len(targets), skipped)
        rows += [_row("table4", (s, m), config, s, "", None, m, v, refs[m], note)
                 for m, v in vals.items()]
        for c in targets:
            j = names.index(c)
            nb = (TABLE4_NOTEBOOK_AST_OCP_PRUNED.get(c) if config.paper_model == "AST"
                  and s == "OCP" else None)
            cnote = "paper_value: authors' AST notebook (noun substring)" if nb is not None else ""
            per = {"n_pruned": (float(counts[c]), None if nb is None else float(nb)),
                   "a_c": (met["a"][j], None), "r_c": (met["r"][j], None),
                   "acc_after": (accs[c], None)}
            rows += [_row("table4", (s, c, m), config, s, c, None, m, v, p,
                          cnote if m == "n_pruned" else "") for m, (v, p) in per.items()]
    return ResultRow.frame(rows)


def _note(strategy: str, config: UnlearningConfig, n_targets: int, skipped: int) -> str:
    parts = [f"{n_targets} target classes"]
    if skipped:
        parts.append(f"{skipped} without test clips skipped")
    if strategy == "OCP":
        parts.append(f"match={config.ocp_match}, pos={','.join(config.ocp_pos)}")
    elif strategy in ("DB", "TAB"):
        sim = config.db_similarity if strategy == "DB" else config.tab_similarity
        parts.append(f"top-{config.closed_top_k} of {sim}")
    else:
        parts.append(f"{config.random_count} neurons, seed {config.random_seed}, "
                     + ("compat: pruned baseline" if config.random_prunes_baseline
                        else "unpruned baseline"))
        if config.mask_row_order_compat:
            parts.append("compat: mask row order")
    return "; ".join(parts)


def fig10(concepts: pl.DataFrame, layer_sizes: Mapping[str, int], class_names: Sequence[str],
          test_clips: pl.DataFrame, evaluate: Evaluate, config: UnlearningConfig, *,
          lemma_fn: LemmaFn = simple_lemma,
          evaluate_many: EvaluateMany | None = None) -> pl.DataFrame:
    """Fig 10: per-class mean own-class logit before / after pruning for one target class.

    Args: as :func:`table4`; the target and strategy are ``config.fig10_target`` /
        ``config.fig10_strategy``.

    Returns:
        ResultRow frame, experiment ``"fig10"``: per class with test clips (``series`` = class,
        ``x`` = position when sorted by change ascending, 0 = largest drop) metrics
        ``own_logit_before``, ``own_logit_after``, ``change`` (raw logits); plus one
        ``n_pruned`` row (``series`` = target, ``x`` null). ``paper_value``: read-offs of the
        authors' AST notebook when ``paper_model == "AST"`` (the paper's figure is
        BEATs-finetuned and prints no numbers).

    Raises:
        ValueError: the target is not a class or has no test clip; see :func:`table4`.
    """
    hidden, names, t = _prepare(layer_sizes, class_names, test_clips, config)
    target, s = config.fig10_target, config.fig10_strategy
    if target not in names or names.index(target) not in set(t.tolist()):
        raise ValueError(f"config.fig10_target: {target!r} is not a class with test clips")
    mask = select_masks(s, concepts, hidden, names, [target], config, lemma_fn)[target]
    base, after = evaluate_masks([empty_mask(hidden), mask], evaluate, evaluate_many, len(t))
    b, a = own_logit_means(base, t, len(names)), own_logit_means(after, t, len(names))
    order = sorted((j for j in range(len(names)) if np.isfinite(b[j])),
                   key=lambda j: (a[j] - b[j], names[j]))
    ast = config.paper_model == "AST"
    note = "paper_value: authors' AST notebook read-off" if ast else ""
    n = n_pruned(mask)
    rows = [_row("fig10", (s, target, "n_pruned"), config, s, target, None, "n_pruned",
                 float(n), 2651.0 if ast and target == "water_drops" else None, note)]
    for pos, j in enumerate(order):
        ref = FIG10_NOTEBOOK_AST_WATER_DROPS.get(names[j]) if ast and target == "water_drops" \
            else None
        for metric, v, p in (("own_logit_before", b[j], None if ref is None else ref[0]),
                             ("own_logit_after", a[j], None if ref is None else ref[1]),
                             ("change", a[j] - b[j], None if ref is None else ref[1] - ref[0])):
            rows.append(_row("fig10", (s, target, names[j], metric), config, s, names[j],
                             float(pos), metric, float(v), p, note if ref is not None else ""))
    return ResultRow.frame(rows)
