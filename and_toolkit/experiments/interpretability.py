"""Neuron interpretability by caption-sentence clustering: Fig 6, Figs 11-13, Table 8.

Reference: reference-spec §10 and §15 items 17-18; paper Sec 4.5, Appendix G (Algorithm 1).

Pipeline (each step a pure function; the caller embeds the pool with a TextEncoder):

1. :func:`build_sentence_pool`: every caption split into sentences, junk sentences removed
   (``dissect.text.sentence_pool``: the authors' junk phrases; no length filter).
2. The caller embeds ``pool["sentence"]`` -> ``embeddings`` [n_sentences, d].
3. :func:`inertia_curve` + :func:`elbow_k` choose k (the paper says "elbow method" but the
   authors fixed k=11; we run both); :func:`kmeans_labels` fits a seeded KMeans.
4. :func:`clip_clusters`: the multiset of cluster ids of each caption's sentences.
5. :func:`uninterpretable_neurons`: for each neuron's top-K clips, two rules
   (:func:`max_cluster_support` = the authors' code and the Sec 4.5 prose: the largest number
   of distinct top-K captions sharing a cluster; :func:`multiset_intersection_size` =
   Algorithm 1 as printed: |∩_i C_i| over multisets, a cluster must occur in *every* caption).
   A neuron is interpretable iff its score >= τ, τ in {3K/5, 4K/5, K} (:func:`tau_grid`).
   Top-K clips without a caption are skipped (the authors stop at the first one).
6. :func:`cluster_words`: Table 8's per-cluster word frequencies (for word clouds).

Note: the Qwen2-Audio ESC-50 captions give 2,015 pool sentences for 2,000 clips (the authors'
SALMONN captions ~4.9). |∩_i C_i| is at most the fewest sentences of a top-K caption
(:data:`RULE_BOUND`), so Algorithm 1 marks every neuron uninterpretable for every τ >= 2 by
construction. Such a (rule, K, τ) is degenerate: its rows are tabulated with the bound that
proves it (and the share of neurons that could reach τ), never drawn as a curve;
:func:`pool_rows` shows the pool's sentences per caption beside the authors' 4.9.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.experiments.adjectives import (
    KEY,
    HeadBlock,
    neuron_blocks,
    require_columns,
)
from and_toolkit.experiments.clusters import (  # noqa: F401  (re-exported API)
    ClusterConfig,
    build_sentence_pool,
    clip_clusters,
    cluster_words,
    elbow_k,
    elbow_rows,
    inertia_curve,
    kmeans_labels,
    pool_rows,
)
from and_toolkit.experiments.paper import FIG6 as PAPER_FIG6
from and_toolkit.experiments.rows import Padded, result_key, result_row, tagged
from and_toolkit.records.models import ResultRow

Rule = Literal["max_cluster_support", "multiset_intersection"]
RULES: tuple[Rule, ...] = ("max_cluster_support", "multiset_intersection")
RULE_LABELS: dict[Rule, str] = {"max_cluster_support": "max cluster support",
                                "multiset_intersection": "multiset intersection"}
FIG6_SETTING: tuple[int, int] = (5, 4)
"""(K, τ) of Fig 6 and of its per-sub-layer table."""


class InterpretabilityConfig(BaseModel):
    """Settings of :func:`uninterpretable_neurons`.

    Attributes:
        rules: which interpretability rules to evaluate.
        clustering: label of the clustering used (a key part, and in series; e.g. "k=11").
        head_block: block-less head neurons: "exclude" (the authors plot sub-layers of the
            transformer blocks only) or "last".
        experiment: experiment id of the τ-grid rows (Figs 11-13, every K). With K=5, the
            τ=4 block rows are also emitted under ``fig6_experiment``.
        fig6_experiment: experiment id of the Fig 6 rows (both rules).
        sublayer_experiment: experiment id of the Fig 6 setting per sub-layer.
        sublayer_rule: the rule of the per-sub-layer rows (the authors' figure's rule).
        paper_model: our model id -> paper model name for paper values (else the id itself).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[Rule, ...] = RULES
    clustering: str = "k=11"
    head_block: HeadBlock = "exclude"
    experiment: str = "fig11_13"
    fig6_experiment: str = "fig6"
    sublayer_experiment: str = "fig6_sublayers"
    sublayer_rule: Rule = "max_cluster_support"
    paper_model: dict[str, str] = Field(default_factory=dict)


# ----- the two rules ----------------------------------------------------------------------------
def max_cluster_support(clusters_per_clip: Sequence[Sequence[int]]) -> int:
    """Largest number of captions that have at least one sentence in the same cluster.

    Args:
        clusters_per_clip: for each available top-K caption, its sentences' clusters.

    Returns:
        max over clusters of #captions containing it (0 if there is none).
    """
    counts = Counter(c for clusters in clusters_per_clip for c in set(clusters))
    return max(counts.values(), default=0)


def multiset_intersection_size(clusters_per_clip: Sequence[Sequence[int]]) -> int:
    """|∩_i C_i| over multisets (Algorithm 1): Σ_c min_i multiplicity of c in C_i.

    Args:
        clusters_per_clip: for each available top-K caption, its sentences' clusters.

    Returns:
        The size of the multiset intersection (0 for no captions).
    """
    if not clusters_per_clip:
        return 0
    inter = Counter(clusters_per_clip[0])
    for clusters in clusters_per_clip[1:]:
        inter &= Counter(clusters)
    return sum(inter.values())


def tau_grid(k: int) -> tuple[int, int, int]:
    """τ values {3K/5, 4K/5, K}, rounded up for K not a multiple of 5.

    Args:
        k: top-K (>= 1).

    Returns:
        (ceil(3K/5), ceil(4K/5), K): K=5 -> (3, 4, 5); 10 -> (6, 8, 10); 20 -> (12, 16, 20).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return (-(-3 * k // 5), -(-4 * k // 5), k)


def neuron_scores(extremes: pl.DataFrame, clusters: pl.DataFrame) -> pl.DataFrame:
    """Both rule scores of every neuron with a top-K ('high') Extremes row.

    Args:
        extremes: Extremes frame (only side 'high' rows are used; one K for all).
        clusters: :func:`clip_clusters` output.

    Returns:
        Frame ``model, layer, unit, k, n_clips (captioned top-K clips), n_missing,
        min_sentences (fewest pool sentences of a captioned top-K clip, 0 without one),
        max_cluster_support, multiset_intersection`` (Int32 / Int64 counts).

    Raises:
        ValueError: missing columns or several K values.
    """
    require_columns(extremes, [*KEY, "side", "k", "clip_ids"], "extremes")
    require_columns(clusters, ["clip_id", "clusters"], "clusters")
    high = extremes.filter(pl.col("side") == "high")
    if high["k"].n_unique() > 1:
        raise ValueError(f"extremes: several K values {sorted(high['k'].unique().to_list())}")
    lookup = dict(clusters.select("clip_id", "clusters").iter_rows())
    out: dict[str, list] = {c: [] for c in (*KEY, "k", "n_clips", "n_missing", "min_sentences",
                                            "max_cluster_support", "multiset_intersection")}
    for model, layer, unit, k, clip_ids in high.select(*KEY, "k", "clip_ids").iter_rows():
        found = [lookup[c] for c in clip_ids if c in lookup]
        for name, v in zip(out, (model, layer, unit, k, len(found), len(clip_ids) - len(found),
                                 min((len(f) for f in found), default=0),
                                 max_cluster_support(found), multiset_intersection_size(found)),
                           strict=True):
            out[name].append(v)
    return pl.DataFrame(out, schema={
        "model": pl.String, "layer": pl.String, "unit": pl.Int32, "k": pl.Int32,
        "n_clips": pl.Int32, "n_missing": pl.Int32, "min_sentences": pl.Int32,
        "max_cluster_support": pl.Int32, "multiset_intersection": pl.Int32})


RULE_BOUND: dict[Rule, str] = {"max_cluster_support": "n_clips",
                               "multiset_intersection": "min_sentences"}
"""Column of :func:`neuron_scores` bounding each rule's score: max cluster support <= the
captioned top-K clips; |∩ C_i| <= the fewest pool sentences of a top-K caption (a multiset
intersection is no larger than its smallest multiset). A neuron whose bound is below τ is
uninterpretable whatever the clustering."""


def tau_label(k: int, tau: int) -> str:
    """Display label of a (K, τ) setting, e.g. "K=5, τ=4"."""
    return f"K={k}, \u03c4={tau}"


def _rule_rows(pm: pl.DataFrame, model: str, k: int, rule: Rule,
               config: InterpretabilityConfig,
               paper: tuple[float, ...] | None) -> list[dict[str, object]]:
    """Rows of one model and rule for every τ of the grid (see uninterpretable_neurons)."""
    cl, exp = config.clustering, config.experiment
    series = f"{rule} ({cl})"
    rows: list[dict[str, object]] = []
    for tau in tau_grid(k):
        un = pm.with_columns((pl.col(rule) < tau).alias("u"))
        label, fig6 = tau_label(k, tau), (k, tau) == FIG6_SETTING
        setting = (Padded(k, 2), Padded(tau, 2))
        bound = pm[RULE_BOUND[rule]].to_numpy()
        can = 100.0 * float(np.mean(bound >= tau))
        why = (f"not plotted: no neuron can reach {label} under {RULE_LABELS[rule]}: the "
               f"score is at most {RULE_BOUND[rule]} (max {int(bound.max())}) "
               "< \u03c4, so 100 % uninterpretable by construction" if can == 0 else "")
        pct = 100.0 * float(un["u"].mean())  # type: ignore[arg-type]
        rows.append(result_row(exp, result_key(model, "all", rule, cl, *setting), label,
                               pct, model=model, group="all blocks", series=series, note=why))
        rows.append(result_row(exp, result_key(model, "can_pass", rule, cl, *setting), label,
                               can, model=model, group="neurons that can reach \u03c4 (%)",
                               series=series, note="bound: " + RULE_BOUND[rule]))
        if why:
            if fig6 and config.fig6_experiment != exp:
                rows.append(result_row(config.fig6_experiment,
                                       result_key(model, cl, rule, "all_blocks"),
                                       "pct_uninterpretable", pct, model=model, group=rule,
                                       series=cl, note=why))
            continue
        for b, frac in un.group_by("block").agg(pl.col("u").mean()).sort("block").iter_rows():
            pv = paper[b - 1] if paper and fig6 and 1 <= b <= len(paper) else None
            rows.append(result_row(exp, result_key(model, "curve", *setting, rule, cl,
                                                   Padded(b, 3)),
                                   "pct_uninterpretable", 100 * frac, model=model, group=label,
                                   series=series, x=b, paper_value=pv))
            if fig6 and config.fig6_experiment != exp:
                note = ("the paper's figure used this rule (authors' code)"
                        if rule == "max_cluster_support" else "Algorithm 1 as printed")
                rows.append(result_row(config.fig6_experiment,
                                       result_key(model, cl, rule, tagged("block", b)),
                                       "pct_uninterpretable", 100 * frac, model=model,
                                       group=rule, series=cl, x=b, paper_value=pv, note=note))
        if fig6 and rule == config.sublayer_rule:
            by_sub = un.group_by("block", "sublayer").agg(pl.col("u").mean())
            for b, sub, frac in by_sub.sort("block", "sublayer").iter_rows():
                rows.append(result_row(config.sublayer_experiment,
                                       result_key(model, sub, Padded(b, 3)), f"block {b}",
                                       100 * frac, model=model,
                                       group=f"{RULE_LABELS[rule]}, {cl}", series=sub))
    return rows


def uninterpretable_neurons(extremes: pl.DataFrame, clusters: pl.DataFrame,
                            neurons: pl.DataFrame, config: InterpretabilityConfig) -> tuple[
        pl.DataFrame, pl.DataFrame]:
    """% uninterpretable neurons per block and per sub-layer, for each rule and τ.

    Call once per K (5, 10, 20) and per clustering, and concatenate the frames: keys hold the
    model, clustering, rule, K and τ (K, τ and blocks zero-padded so keys sort numerically).

    Args:
        extremes: Extremes frame with one K.
        clusters: :func:`clip_clusters` output of the chosen clustering.
        neurons: the population, one row per neuron (see ``adjectives.neuron_blocks``).
        config: rules, clustering label, head handling, experiment ids.

    Returns:
        (rows, per_neuron). ``rows`` is a ResultRow frame (values in %):

        * ``config.experiment`` (Figs 11-13): per (rule, τ), metric "pct_uninterpretable"
          per block (group = :func:`tau_label`, one panel per setting; series
          "<rule> (<clustering>)"; x = block, neuron-weighted over the block's sub-layers;
          the paper's Fig 6 values at K=5, τ=4), key
          "<model>/curve/<K>/<τ>/<rule>/<clustering>/<block>"; the all-block percentage
          (x null, group "all blocks", metric = :func:`tau_label`, same series), key
          "<model>/all/<rule>/<clustering>/<K>/<τ>"; and, when some top-K clips have no
          caption, their count "n_missing_clips" (group "K=<K>", series = clustering).
        * ``config.fig6_experiment`` (K=5 only): the τ=4 block rows again with group = rule,
          series = clustering and the paper's Fig 6 values (on both rules; the authors'
          figure came from max_cluster_support).
        * ``config.sublayer_experiment`` (K=5 only): τ=4, ``config.sublayer_rule``, one row
          per (block, sub-layer): group "<rule label>, <clustering>", series = sub-layer,
          metric "block <b>", x null.

        ``per_neuron`` is :func:`neuron_scores` joined with block and sublayer.

    Raises:
        ValueError: missing columns, several K, or a neuron of ``neurons`` without a top-K
            Extremes row.
    """
    blocks = neuron_blocks(neurons, config.head_block)
    per_neuron = blocks.join(neuron_scores(extremes, clusters), on=list(KEY), how="left")
    missing = per_neuron.filter(pl.col("k").is_null())
    if missing.height:
        raise ValueError(f"extremes: {missing.height} neurons have no 'high' row, e.g. "
                         f"{missing.select(*KEY).row(0)}")
    if per_neuron.height == 0:
        return ResultRow.frame([]), per_neuron
    k = int(per_neuron["k"][0])
    cl = config.clustering
    rows: list[dict[str, object]] = []
    for model in per_neuron["model"].unique().sort().to_list():
        pm = per_neuron.filter(pl.col("model") == model)
        paper = PAPER_FIG6.get(config.paper_model.get(model, model))  # type: ignore[call-overload]
        n_missing = int(pm["n_missing"].sum())
        if n_missing:
            rows.append(result_row(config.experiment,
                                   result_key(model, cl, tagged("K", k), "n_missing_clips"),
                                   "n_missing_clips", float(n_missing), model=model,
                                   group=f"K={k}", series=cl))
        for rule in config.rules:
            rows += _rule_rows(pm, model, k, rule, config, paper)
    return ResultRow.frame(rows), per_neuron
