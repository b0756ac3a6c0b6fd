"""Feature-importance ablations: paper Fig 4a/b/c (Sec 4.4; reference §8).

Per neuron we count, from its open concepts (ConceptSet rows of kind ``open``): prepositions,
verbs, nouns, adjectives (|C_open-set|), basic adjectives (|C_open ∩ basic|), high-level
adjectives (|C_open \\ basic|), the summary length in tokens, and whether each single basic
adjective is in C_open-set (:func:`neuron_counts`). For a budget of r % of *all* linear-layer
neurons (classifier included in the denominator, never pruned) and each seed:

* 4a / 4b: shuffle the pool with ``random.Random(seed)``, stable-sort by the count descending
  (ties keep the shuffled order; criterion ``random`` does not sort) and prune the first
  ``budget`` neurons;
* 4c: walk the shuffled pool and prune neurons whose C_open-set contains the adjective until the
  budget is reached (all of them if fewer qualify). Adjectives are matched as Fig 3 / Fig 9 count
  them (``adjectives.open_adjectives`` with the same merges, ``high -> high-quality``), so a 4c
  word prunes the neurons Fig 9 counts for it; a word no neuron holds is tabulated with the
  reason, never drawn as a flat curve.

Accuracy (fraction) comes from the injected :data:`~and_toolkit.experiments.masks.Evaluate` and
is averaged over seeds. Authors' behaviours, each behind a switch (:meth:`AblationConfig.reference`
turns all on): the "12 %" budget of 6442 = 11.64 % (``budget_typo_compat``), the 0 % point fixed
at 0.95 (``zero_point_compat``), classifier neurons in the pool consuming budget
(``classifier_in_pool``), pruning units 0..k−1 per layer (``mask_row_order_compat``) and the
code's basic-adjective set with 'high' for 'high-quality'.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from and_toolkit.experiments.adjectives import AdjectiveConfig, open_adjectives
from and_toolkit.experiments.masks import (
    Evaluate,
    EvaluateMany,
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
    FIG4_BUDGETS_AST,
    FIG4_PERCENTS,
    FIG4_TOTAL_AST,
    FIG4A,
    FIG4B,
    FIG4C,
    PaperModel,
)
from and_toolkit.experiments.rows import result_key, result_row, tagged
from and_toolkit.records.models import ResultRow

__all__ = ["COUNT_CRITERIA", "AblationConfig", "budgets", "fig4", "neuron_counts",
           "prune_order", "select_for_budget"]

Panel = Literal["4a", "4b", "4c"]
COUNT_CRITERIA: tuple[str, ...] = (
    "preps", "verbs", "nouns", "caption_len", "adjectives", "basic_adj", "high_adj")
"""Count columns of :func:`neuron_counts` usable as 4a / 4b criteria (plus ``random``)."""
_PAPER = {"4a": FIG4A, "4b": FIG4B, "4c": FIG4C}
_PAPER_ALIAS = {"high-quality": "high"}


class AblationConfig(BaseModel):
    """Configuration of Fig 4.

    Attributes:
        model: target-network id (ConceptSet.model, ResultRow.model).
        classifier_layer: module path of the classifier (never pruned).
        panels: panels to run.
        criteria_4a / criteria_4b: criteria of panels a / b (``random`` or a count column).
        adjectives_4c: adjectives of panel c.
        basic_adjectives: the basic set (paper: high-pitched, high-quality, clear, loud).
        pos_preps / pos_verbs / pos_nouns / pos_adjectives: ConceptSet.pos values counted.
        kept_only: count only open concepts with verdict ``kept``.
        merges: adjective merges before matching basic / 4c words (default: Fig 3 / Fig 9's,
            ``high -> high-quality``, so Fig 4c prunes the neurons Fig 9 counts for a word).
        percents: budgets in % of all linear-layer neurons (x of the figure).
        seeds: shuffle seeds; results are averaged over them.
        classifier_in_pool: compat: classifier neurons are in the pool and use budget.
        budget_typo_compat: compat: the 12 % budget is 6442/55346 = 11.64 %.
        zero_point_compat: compat: the 0 % point is 0.95 instead of the measured accuracy.
        mask_row_order_compat: compat: a layer with k selected units prunes units 0..k−1.
        paper_model: paper model whose numbers go into ``paper_value`` (only "AST" has any).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    classifier_layer: str = Field(min_length=1)
    panels: tuple[Panel, ...] = ("4a", "4b", "4c")
    criteria_4a: tuple[str, ...] = ("random", "preps", "verbs", "nouns", "caption_len",
                                    "adjectives")
    criteria_4b: tuple[str, ...] = ("random", "basic_adj", "high_adj")
    adjectives_4c: tuple[str, ...] = ("clear", "high-pitched", "high-quality", "loud")
    basic_adjectives: tuple[str, ...] = ("high-pitched", "high-quality", "clear", "loud")
    pos_preps: tuple[str, ...] = ("ADP",)
    pos_verbs: tuple[str, ...] = ("VERB",)
    pos_nouns: tuple[str, ...] = ("NOUN",)
    pos_adjectives: tuple[str, ...] = ("ADJ",)
    kept_only: bool = True
    merges: dict[str, str] = Field(default_factory=lambda: dict(AdjectiveConfig().merges))
    percents: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
    seeds: tuple[int, ...] = Field(default=(20, 202, 2024), min_length=1)
    classifier_in_pool: bool = False
    budget_typo_compat: bool = False
    zero_point_compat: bool = False
    mask_row_order_compat: bool = False
    paper_model: PaperModel | None = None

    @field_validator("criteria_4a", "criteria_4b")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if c != "random" and c not in COUNT_CRITERIA]
        if bad:
            raise ValueError(f"unknown criteria {bad}; known: random, {', '.join(COUNT_CRITERIA)}")
        return v

    @field_validator("percents")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < p <= 100 for p in v) or len(set(v)) != len(v):
            raise ValueError(f"percents must be distinct and lie in (0, 100], got {v}")
        return v

    @classmethod
    def reference(cls, **kwargs: Any) -> AblationConfig:
        """All of the authors' behaviours; other fields from ``kwargs``."""
        return cls(**{
            "classifier_in_pool": True, "budget_typo_compat": True, "zero_point_compat": True,
            "mask_row_order_compat": True, "merges": {},
            "basic_adjectives": ("clear", "high-pitched", "high", "loud", "random"),
            "adjectives_4c": ("clear", "high-pitched", "high", "loud"), **kwargs})


def neuron_counts(concepts: pl.DataFrame, layer_sizes: Mapping[str, int], config: AblationConfig,
                  caption_len: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per-neuron counts for Fig 4, one row per neuron of ``layer_sizes`` (pool order).

    Args:
        concepts: ConceptSet frame; open rows of ``config.model`` are used. Each distinct word
            counts once per neuron.
        layer_sizes: ``{module path: n_units}`` of all linear layers in model order, classifier
            included (it counts in the budget denominator).
        config: see :class:`AblationConfig`.
        caption_len: optional frame with columns ``layer``, ``unit``, ``caption_len`` (tokens of
            the calibrated summary; neurons absent from it count 0). None: column is null.

    Returns:
        Frame: ``layer``, ``unit``, ``is_classifier``, ``preps``, ``verbs``, ``nouns``,
        ``adjectives``, ``basic_adj``, ``high_adj`` (Int64), ``caption_len`` (Int64, nullable)
        and one Boolean ``adj:<w>`` column per ``config.adjectives_4c`` word.

    Raises:
        ValueError: a ConceptSet / caption_len row names a layer not in ``layer_sizes`` or a unit
            outside its layer.
    """
    hidden_layers(layer_sizes, config.classifier_layer)  # validates sizes
    pool = pl.DataFrame({
        "layer": [lay for lay, n in layer_sizes.items() for _ in range(n)],
        "unit": np.concatenate([np.arange(n) for n in layer_sizes.values()]).astype(np.int64),
    }).with_columns(is_classifier=pl.col("layer") == config.classifier_layer)
    sub = concepts.filter((pl.col("model") == config.model) & (pl.col("kind") == "open"))
    if config.kept_only:
        sub = sub.filter(pl.col("verdict") == "kept")
    sub = sub.select("layer", pl.col("unit").cast(pl.Int64), pl.col("concept").str.to_lowercase(),
                     "pos")
    _check_keys(sub, layer_sizes, "ConceptSet")
    basic = [w.lower() for w in config.basic_adjectives]

    def n_words(cond: pl.Expr) -> pl.Expr:
        return pl.col("concept").filter(cond).n_unique()

    agg = sub.group_by("layer", "unit").agg(
        preps=n_words(pl.col("pos").is_in(config.pos_preps)),
        verbs=n_words(pl.col("pos").is_in(config.pos_verbs)),
        nouns=n_words(pl.col("pos").is_in(config.pos_nouns)),
        adjectives=n_words(pl.col("pos").is_in(config.pos_adjectives)),
    )
    words = _adjective_words(concepts, config).group_by("layer", "unit").agg(
        basic_adj=pl.col("concept").is_in(basic).sum(),
        high_adj=(~pl.col("concept").is_in(basic)).sum(),
        **{f"adj:{w}": (pl.col("concept") == w.lower()).any() for w in config.adjectives_4c},
    )
    out = (pool.join(agg, on=["layer", "unit"], how="left", maintain_order="left")
           .join(words, on=["layer", "unit"], how="left", maintain_order="left"))
    ints = ["preps", "verbs", "nouns", "adjectives", "basic_adj", "high_adj"]
    out = out.with_columns([pl.col(c).fill_null(0).cast(pl.Int64) for c in ints]
                           + [pl.col(f"adj:{w}").fill_null(False) for w in config.adjectives_4c])
    if caption_len is None:
        return out.with_columns(caption_len=pl.lit(None, dtype=pl.Int64))
    cl = caption_len.select("layer", pl.col("unit").cast(pl.Int64),
                            pl.col("caption_len").cast(pl.Int64))
    _check_keys(cl, layer_sizes, "caption_len")
    return (out.join(cl, on=["layer", "unit"], how="left", maintain_order="left")
            .with_columns(pl.col("caption_len").fill_null(0)))


def _adjective_words(concepts: pl.DataFrame, config: AblationConfig) -> pl.DataFrame:
    """``layer, unit, concept``: each neuron's open-set adjectives as Fig 3 / Fig 9 count them
    (``adjectives.open_adjectives``: lower-cased, quotes stripped, ``config.merges`` applied,
    one row per distinct word), so a 4b / 4c word selects the neurons Fig 9 counts for it."""
    sub = concepts.filter((pl.col("model") == config.model) & (pl.col("kind") == "open")
                          & pl.col("pos").is_in(config.pos_adjectives))
    if not config.kept_only:
        sub = sub.with_columns(verdict=pl.lit("kept"))
    words = open_adjectives(sub.with_columns(method=pl.lit("OCP")), "OCP", None, config.merges)
    return words.select("layer", pl.col("unit").cast(pl.Int64), "concept")


def _check_keys(df: pl.DataFrame, layer_sizes: Mapping[str, int], what: str) -> None:
    unknown = sorted(set(df["layer"].unique().to_list()) - set(layer_sizes))
    if unknown:
        raise ValueError(f"{what}: layer {unknown[:5]} not in layer_sizes")
    sizes = pl.DataFrame({"layer": list(layer_sizes), "_n": list(layer_sizes.values())})
    bad = df.join(sizes, on="layer").filter((pl.col("unit") < 0) | (pl.col("unit") >= pl.col("_n")))
    if bad.height:
        raise ValueError(f"{what}: units outside their layer: {bad.head(5).rows()}")


def budgets(percents: Sequence[float], total: int, typo_compat: bool = False) -> list[int]:
    """Neuron counts of each budget: round-half-up of ``p / 100 * total``.

    With ``typo_compat`` the 12 % budget is ``6442 / 55346`` of ``total`` (the authors' count).
    """
    out = []
    for p in percents:
        frac = FIG4_BUDGETS_AST[-1] / FIG4_TOTAL_AST if typo_compat and p == 12 else p / 100
        out.append(int(np.floor(frac * total + 0.5)))
    return out


def prune_order(counts: npt.NDArray[Any] | None, n: int, seed: int) -> npt.NDArray[np.int64]:
    """Pool positions in pruning order.

    ``random.Random(seed).shuffle`` of ``0..n−1`` (the permutation the authors' shuffle of their
    item list applies), then a stable sort by ``counts`` descending (None: no sort).

    Args:
        counts: [n] count per pool position, or None for the random criterion.
        n: pool size.
        seed: shuffle seed.

    Returns:
        int64 [n] permutation of pool positions.
    """
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    order = np.asarray(perm, dtype=np.int64)
    if counts is None:
        return order
    return order[np.argsort(-np.asarray(counts)[order], kind="stable")]


def select_for_budget(order: npt.NDArray[np.int64], budget: int,
                      eligible: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
    """The first ``budget`` positions of ``order`` (restricted to ``eligible`` ones if given)."""
    if eligible is not None:
        order = order[eligible[order]]
    return order[:budget]


def _row(config: AblationConfig, panel: str, crit: str, seed: int | None, x: float, metric: str,
         value: float | None, paper: float | None, note: str) -> dict[str, Any]:
    """One Fig 4 row, key ``<model>/<panel>/<criterion>/<mean | seed=s>/<x %>/<metric>``;
    series "mean" (seed None) or "seed=<s>"."""
    series = "mean" if seed is None else tagged("seed", seed)
    return result_row(f"fig{panel}", result_key(config.model, panel, crit, series, x, metric),
                      metric, value, model=config.model, group=crit, series=series, x=x,
                      paper_value=paper, note=note)


def _table_row(config: AblationConfig, panel: str, crit: str, metric: str,
               value: float | None, note: str) -> dict[str, Any]:
    """A tabulated Fig 4 row (x null): key ``<model>/<panel>/<criterion>/<metric>``."""
    return result_row(f"fig{panel}", result_key(config.model, panel, crit, metric), metric,
                      value, model=config.model, group=crit, series="mean", note=note)


def _paper(config: AblationConfig, panel: str, crit: str, x: float) -> float | None:
    if config.paper_model != "AST" or x not in FIG4_PERCENTS:
        return None
    curve = _PAPER[panel].get(_PAPER_ALIAS.get(crit, crit)) or _PAPER[panel].get(crit)
    return None if curve is None else curve[FIG4_PERCENTS.index(x)]


def fig4(counts: pl.DataFrame, layer_sizes: Mapping[str, int], test_clips: pl.DataFrame,
         evaluate: Evaluate, config: AblationConfig, not_run: Mapping[str, str] | None = None,
         *, evaluate_many: EvaluateMany | None = None) -> pl.DataFrame:
    """Fig 4a/b/c: accuracy after ablating r % of neurons by each criterion, mean over seeds.

    Args:
        counts: the frame of :func:`neuron_counts` (same ``layer_sizes`` and ``config``).
        layer_sizes: ``{module path: n_units}`` of all linear layers, classifier included.
        test_clips: ProbeClip frame of the test clips, rows in logits-row order (``target``).
        evaluate: see :data:`~and_toolkit.experiments.masks.Evaluate`.
        config: see :class:`AblationConfig`.
        not_run: ``{criterion: reason}``: rows with null values and ``"not run: <reason>"``.
            ``caption_len`` is not run automatically when ``counts.caption_len`` is all null.
        evaluate_many: optional batched evaluation of all distinct masks.

    Returns:
        ResultRow frame, experiments ``fig4a`` / ``fig4b`` / ``fig4c``: ``group`` = criterion,
        ``x`` = % ablated (0 and ``config.percents``); ``series`` ``"mean"`` (metrics
        ``accuracy`` fraction with the paper's read-off, ``accuracy_sd`` = sample SD over
        the seeds (with >= 2 seeds), ``n_pruned``) and ``"seed=<s>"`` (``accuracy``,
        ``n_pruned`` per seed). Tabulated rows (x null, key ``<model>/<panel>/<criterion>/
        <metric>``): 4c ``n_eligible`` (neurons holding the adjective); a criterion that was
        not run gives one ``accuracy`` row (null, ``"not run: <reason>"``), one that prunes no
        neuron at any budget and seed one ``n_pruned`` row (0, ``"not plotted: ..."``) and no
        curve.

    Raises:
        ValueError: ``counts`` does not match ``layer_sizes`` or lacks a column, or malformed
            logits.
    """
    hidden = hidden_layers(layer_sizes, config.classifier_layer)
    expected = sum(layer_sizes.values())
    if counts.height != expected:
        raise ValueError(f"counts: {counts.height} rows for {expected} neurons of layer_sizes")
    missing = {"layer", "unit", "is_classifier", "caption_len"} - set(counts.columns)
    if missing:
        raise ValueError(f"counts: missing columns {sorted(missing)} (build it with neuron_counts)")
    not_run = dict(not_run or {})
    if counts["caption_len"].null_count() == counts.height:
        not_run.setdefault("caption_len", "no caption lengths given")
    pool = counts if config.classifier_in_pool else counts.filter(~pl.col("is_classifier"))
    layers, units = pool["layer"].to_numpy(), pool["unit"].to_numpy()
    is_fc = pool["is_classifier"].to_numpy()
    sizes = budgets(config.percents, expected, config.budget_typo_compat)
    jobs: list[tuple[str, str]] = [(p, c) for p in config.panels for c in (
        config.criteria_4a if p == "4a" else config.criteria_4b if p == "4b"
        else config.adjectives_4c)]
    cols = {(p, c): c if p != "4c" else f"adj:{c}" for p, c in jobs}
    masks: dict[tuple[str, int, int], Mask] = {}
    for (_, crit), col in cols.items():
        if crit in not_run or (col, config.seeds[0], sizes[0]) in masks:
            continue
        if col != "random" and col not in pool.columns:
            raise ValueError(f"counts: no column {col!r} (build it with neuron_counts)")
        for seed in config.seeds:
            if col.startswith("adj:"):
                order, elig = prune_order(None, pool.height, seed), pool[col].to_numpy()
            else:
                vals = None if col == "random" else pool[col].to_numpy()
                order, elig = prune_order(vals, pool.height, seed), None
            for b in sizes:
                pos = select_for_budget(order, b, elig)
                pos = pos[~is_fc[pos]]
                m = mask_from_units(hidden, layers[pos].tolist(), units[pos].tolist(), "counts")
                masks[(col, seed, b)] = compat_row_order(m) if config.mask_row_order_compat else m
    t = test_clips["target"].to_numpy().astype(np.int64)
    logits = evaluate_masks([empty_mask(hidden), *masks.values()], evaluate, evaluate_many, t.size)
    acc0 = 0.95 if config.zero_point_compat else accuracy(logits[0], t)
    acc = {k: accuracy(z, t) for k, z in zip(masks, logits[1:], strict=True)}
    rows: list[dict[str, Any]] = []
    for panel, crit in jobs:
        col = cols[(panel, crit)]
        if panel == "4c" and crit not in not_run:
            rows.append(_table_row(config, panel, crit, "n_eligible", float(pool[col].sum()),
                                   f"neurons whose open-set adjectives include {crit!r}"))
        if crit in not_run:
            rows.append(_table_row(config, panel, crit, "accuracy", None,
                                   f"not run: {not_run[crit]}"))
            continue
        if all(not n_pruned(masks[(col, s, b)]) for s in config.seeds for b in sizes):
            rows.append(_table_row(config, panel, crit, "n_pruned", 0.0, f"not plotted: {crit!r}"
                                   " prunes no neuron at any budget (no neuron qualifies)"))
            continue
        note0 = "compat: fixed at 0.95" if config.zero_point_compat else "measured, unpruned"
        rows.append(_row(config, panel, crit, None, 0.0, "accuracy", acc0,
                         _paper(config, panel, crit, 0.0), note0))
        for pct, b in zip(config.percents, sizes, strict=True):
            x = float(pct)
            per_acc = [acc[(col, s, b)] for s in config.seeds]
            per_n = [float(n_pruned(masks[(col, s, b)])) for s in config.seeds]
            note = f"budget {b} of {expected} neurons; {len(config.seeds)} seeds"
            if config.budget_typo_compat and x == 12:
                note += "; compat: 12 % = 6442/55346"
            rows.append(_row(config, panel, crit, None, x, "accuracy", float(np.mean(per_acc)),
                             _paper(config, panel, crit, x), note))
            if len(per_acc) > 1:
                rows.append(_row(config, panel, crit, None, x, "accuracy_sd",
                                 float(np.std(per_acc, ddof=1)), None,
                                 f"sample SD over {len(per_acc)} seeds"))
            rows.append(_row(config, panel, crit, None, x, "n_pruned", float(np.mean(per_n)),
                             None, note))
            for s, a, n in zip(config.seeds, per_acc, per_n, strict=True):
                rows += [_row(config, panel, crit, s, x, m, v, None, "")
                         for m, v in (("accuracy", a), ("n_pruned", n))]
    return ResultRow.frame(rows)
