"""Which neurons each Table 4 / Fig 10 strategy prunes for a target class, in rank order.

Every strategy yields, per target class c, a *ranking* of candidate hidden neurons (best first)
and a *natural count* (how many it prunes on its own terms):

* ``OCP``: neurons with an open noun matching c (:mod:`and_toolkit.experiments.ocp`); natural
  count = all of them. Rank: best match score (cosine for ``meaning``, 1.0 otherwise)
  descending, then the best matched noun's rank in the neuron's noun list (0 = first), then
  layer order, then unit.
* ``DB`` / ``TAB``: neurons with c among their top-``closed_top_k`` closed concepts; natural
  count = all of them. Rank: c's rank in the neuron's list ascending, then its similarity score
  descending, then layer order, then unit.
* ``Random``: every hidden neuron, shuffled with ``random.Random(random_seed)`` (the same order
  for every class); natural count = ``random_count``.

Count matching (:func:`matched_counts`): per class, every strategy prunes the first k_c neurons
of its own ranking, with k_c = ``matched_count`` if configured, else the minimum over the
strategies of their non-zero natural counts for c. A strategy whose natural selection for c is
empty, or whose ranking is shorter than k_c, is excluded for c (flagged in the rows).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.experiments.masks import Mask, compat_row_order, mask_from_units
from and_toolkit.experiments.ocp import (
    LemmaFn,
    OcpRule,
    WordSimilarity,
    match_nouns,
    rule_label,
    simple_lemma,
)
from and_toolkit.experiments.paper import PaperModel

__all__ = ["Selection", "Strategy", "UnlearningConfig", "matched_counts", "select_masks",
           "select_ranked", "selection_note", "units_mask"]

Strategy = Literal["Random", "TAB", "DB", "OCP"]
Unit = tuple[str, int]


class UnlearningConfig(BaseModel):
    """Configuration of Table 4 / Fig 10.

    Attributes:
        model: target-network id (ConceptSet.model, ResultRow.model).
        classifier_layer: module path of the classifier; never pruned, its rows are ignored.
        strategies: strategies to run, in output order.
        ocp_match: OCP noun/class matching rule (:data:`~and_toolkit.experiments.ocp.OcpRule`);
            ``substring`` is the authors' rule.
        ocp_threshold: minimum noun/class cosine of ``ocp_match="meaning"``. Default 0.7: the
            paper's Module B threshold for "two texts say the same thing" with the same MiniLM
            encoder, chosen before seeing any unlearning result (not fitted).
        ocp_encoder: id of the text encoder behind ``meaning`` (for notes / provenance only).
        ocp_pos: ConceptSet.pos values of the open concepts OCP matches (nouns).
        ocp_kept_only: use only open concepts with verdict ``kept``.
        closed_top_k: DB/TAB prune a neuron if c is among its ``closed_top_k`` best concepts.
        db_similarity / tab_similarity: ConceptSet.similarity of the DB / TAB ranking.
        random_count: neurons pruned by Random (clamped to the hidden-neuron count).
        random_seed: seed of ``random.Random`` shuffling the hidden neurons.
        random_prunes_baseline: compat: the Random baseline is the pruned model (ΔA = ΔR = 0).
        mask_row_order_compat: compat: Random prunes units 0..k_l−1 of each layer.
        matched_count: neurons every strategy prunes per class in the count-matched run (None:
            per class, the minimum of the strategies' non-zero natural counts).
        target_classes: classes to unlearn (None: every class with test clips).
        fig10_target / fig10_strategy: Fig 10's target class and strategy.
        paper_model: paper model whose numbers go into ``paper_value``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    classifier_layer: str = Field(min_length=1)
    strategies: tuple[Strategy, ...] = ("Random", "TAB", "DB", "OCP")
    ocp_match: OcpRule = "token"
    ocp_threshold: float = Field(default=0.7, ge=-1.0, le=1.0)
    ocp_encoder: str | None = None
    ocp_pos: tuple[str, ...] = ("NOUN",)
    ocp_kept_only: bool = True
    closed_top_k: int = Field(default=3, ge=1)
    db_similarity: str = "cos_cubed"
    tab_similarity: str = "soft_wpmi"
    random_count: int = Field(default=3000, ge=0)
    random_seed: int = 20
    random_prunes_baseline: bool = False
    mask_row_order_compat: bool = False
    matched_count: int | None = Field(default=None, ge=1)
    target_classes: tuple[str, ...] | None = None
    fig10_target: str = "water_drops"
    fig10_strategy: Strategy = "OCP"
    paper_model: PaperModel | None = None

    @classmethod
    def reference(cls, **kwargs: Any) -> UnlearningConfig:
        """The authors' behaviour (substring OCP, pruned Random baseline, mask-row order)."""
        return cls(**{"ocp_match": "substring", "random_prunes_baseline": True,
                      "mask_row_order_compat": True, **kwargs})


@dataclass(frozen=True)
class Selection:
    """One strategy's choice per target class.

    Attributes:
        ranked: ``{class: [(layer, unit), ...]}`` candidates, best first.
        natural: ``{class: natural count}`` (a prefix length of ``ranked``).
        hits: OCP only: ``{class: {matched noun: score}}``; empty for other strategies.
    """

    ranked: dict[str, list[Unit]]
    natural: dict[str, int]
    hits: dict[str, dict[str, float]]


def _check_layers(df: pl.DataFrame, hidden: Mapping[str, int], what: str) -> None:
    unknown = sorted(set(df["layer"].unique().to_list()) - set(hidden))
    if unknown:
        raise ValueError(f"{what}: ConceptSet.layer {unknown[:5]} not in layer_sizes")


def _ranked(df: pl.DataFrame, hidden: Mapping[str, int], by: list[pl.Expr],
            descending: list[bool]) -> list[Unit]:
    order = {layer: i for i, layer in enumerate(hidden)}
    df = df.with_columns(pl.col("layer").replace_strict(order, return_dtype=pl.Int64)
                         .alias("_layer_pos"))
    df = df.sort([*by, pl.col("_layer_pos"), pl.col("unit")],
                 descending=[*descending, False, False], nulls_last=True)
    return [(str(layer), int(u)) for layer, u in df.select("layer", "unit").iter_rows()]


def select_ranked(strategy: Strategy, concepts: pl.DataFrame, hidden: Mapping[str, int],
                  class_names: Sequence[str], targets: Sequence[str], config: UnlearningConfig,
                  lemma_fn: LemmaFn = simple_lemma,
                  similarity: WordSimilarity | None = None) -> Selection:
    """Ranked candidates and natural count of ``strategy`` for each target class.

    Args:
        strategy: Random, TAB, DB or OCP.
        concepts: ConceptSet frame (rows of other models and of the classifier are ignored).
        hidden: hidden layers ``{module path: n_units}`` in model order (no classifier).
        class_names: all class names (concept names of DB/TAB must be among them).
        targets: the target classes.
        config: see :class:`UnlearningConfig`.
        lemma_fn: lemmatiser of ``ocp_match="lemma"``.
        similarity: text-encoder cosine of ``ocp_match="meaning"``.

    Raises:
        ValueError: no ConceptSet rows for the strategy, unknown concept names or layers, or a
            unit outside its layer.
    """
    if strategy == "Random":
        keys = [(layer, u) for layer, n in hidden.items() for u in range(n)]
        random.Random(config.random_seed).shuffle(keys)
        k = min(config.random_count, len(keys))
        return Selection({c: keys for c in targets}, dict.fromkeys(targets, k), {})
    mine = concepts.filter((pl.col("model") == config.model)
                           & (pl.col("layer") != config.classifier_layer))
    what = f"ConceptSet model={config.model!r} strategy={strategy}"
    if strategy == "OCP":
        sub = mine.filter((pl.col("kind") == "open") & pl.col("pos").is_in(config.ocp_pos))
        if config.ocp_kept_only:
            sub = sub.filter(pl.col("verdict") == "kept")
        words = sorted(sub["concept"].unique().to_list())
        hits = match_nouns(words, targets, config.ocp_match, lemma_fn=lemma_fn,
                           similarity=similarity, threshold=config.ocp_threshold)
    else:
        sim = config.db_similarity if strategy == "DB" else config.tab_similarity
        sub = mine.filter((pl.col("kind") == "closed") & (pl.col("method") == strategy)
                          & (pl.col("similarity") == sim) & (pl.col("rank") < config.closed_top_k))
        unknown = sorted(set(sub["concept"].unique().to_list()) - set(class_names))
        if unknown:
            raise ValueError(f"{what}: concept names not among the class names: {unknown[:10]}")
        hits = {c: {c: 1.0} for c in targets}
        what += f" similarity={sim!r}"
    if sub.height == 0:
        raise ValueError(f"{what}: no ConceptSet rows; pass a reason in not_run if not run")
    _check_layers(sub, hidden, what)
    ranked: dict[str, list[Unit]] = {}
    for c in targets:
        rows = sub.filter(pl.col("concept").is_in(list(hits[c])))
        if strategy == "OCP":
            rows = (rows.with_columns(pl.col("concept").replace_strict(
                        hits[c], return_dtype=pl.Float64).alias("_match"))
                    .group_by("layer", "unit").agg(pl.col("_match").max(), pl.col("rank").min()))
            ranked[c] = _ranked(rows, hidden, [pl.col("_match"), pl.col("rank")], [True, False])
        else:
            rows = rows.unique(["layer", "unit"], keep="first")
            ranked[c] = _ranked(rows, hidden, [pl.col("rank"), pl.col("score")], [False, True])
        mask_from_units(hidden, [u[0] for u in ranked[c]], [u[1] for u in ranked[c]], what)
    return Selection(ranked, {c: len(v) for c, v in ranked.items()},
                     hits if strategy == "OCP" else {})


def units_mask(hidden: Mapping[str, int], units: Sequence[Unit], strategy: Strategy,
               config: UnlearningConfig) -> Mask:
    """Mask pruning ``units`` (Random with ``mask_row_order_compat``: the authors' row order)."""
    mask = mask_from_units(hidden, [u[0] for u in units], [u[1] for u in units])
    return compat_row_order(mask) if strategy == "Random" and config.mask_row_order_compat \
        else mask


def select_masks(strategy: Strategy, concepts: pl.DataFrame, hidden: Mapping[str, int],
                 class_names: Sequence[str], targets: Sequence[str], config: UnlearningConfig,
                 lemma_fn: LemmaFn = simple_lemma,
                 similarity: WordSimilarity | None = None) -> dict[str, Mask]:
    """The natural pruning mask of ``strategy`` for each target class (see
    :func:`select_ranked` for the arguments)."""
    sel = select_ranked(strategy, concepts, hidden, class_names, targets, config, lemma_fn,
                        similarity)
    return {c: units_mask(hidden, sel.ranked[c][: sel.natural[c]], strategy, config)
            for c in targets}


def matched_counts(selections: Mapping[str, Selection], targets: Sequence[str],
                   configured: int | None = None) -> dict[str, int]:
    """Per class, the count every strategy prunes in the count-matched run.

    Args:
        selections: ``{strategy: Selection}`` of the strategies that ran.
        targets: the target classes.
        configured: a fixed count (``UnlearningConfig.matched_count``), or None.

    Returns:
        ``{class: k_c}``: ``configured``, else the minimum over strategies of the non-zero
        natural counts for the class (0 if every strategy prunes nothing).
    """
    out: dict[str, int] = {}
    for c in targets:
        counts = [s.natural[c] for s in selections.values() if s.natural[c] > 0]
        out[c] = configured if configured is not None else min(counts, default=0)
    return out


def selection_note(strategy: str, count: str, config: UnlearningConfig, n_targets: int,
                   skipped: int, chosen: Mapping[str, tuple[list[Any], str]]) -> str:
    """The note of a Table 4 summary row: targets, the selection rule, the count and the
    classes excluded (``chosen``: ``{class: (units pruned, why excluded)}``)."""
    configured = config.matched_count
    parts = [f"{n_targets} target classes"]
    if skipped:
        parts.append(f"{skipped} without test clips skipped")
    if strategy == "OCP":
        parts.append(rule_label(config.ocp_match, config.ocp_threshold, config.ocp_encoder,
                                config.ocp_pos))
    elif strategy in ("DB", "TAB"):
        sim = config.db_similarity if strategy == "DB" else config.tab_similarity
        parts.append(f"top-{config.closed_top_k} of {sim}")
    else:
        parts.append(f"seed {config.random_seed}, " + (
            "compat: pruned baseline" if config.random_prunes_baseline and count == "natural_count"
            else "unpruned baseline"))
        if count == "natural_count":
            parts.insert(1, f"{config.random_count} neurons")
        if config.mask_row_order_compat:
            parts.append("compat: mask row order")
    if count == "matched_count":
        parts.append(f"matched count {configured} per class" if configured is not None else
                     "matched count per class = min of the strategies' non-zero natural counts; "
                     "first neurons of this strategy's ranking")
    excluded = sorted(c for c, (u, _) in chosen.items() if not u)
    if excluded:
        parts.append(f"{len(excluded)} of {n_targets} classes excluded from the means (pruned "
                     f"nothing): {', '.join(excluded)}")
    return "; ".join(parts)
