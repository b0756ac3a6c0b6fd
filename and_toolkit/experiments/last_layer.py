"""Last-layer dissection: paper Table 7 (Appendix E) and Table 2 (Sec 4.1), reference §3.5.

The classifier layer has one neuron per class: neuron ``j`` <-> the class whose target id is
``j``. Predictions (ConceptSet concept names) are compared with class names *as strings*, never
by position in the concept set (the authors' concept file lists the classes in another order,
reference §0). Per (method, similarity):

* ``top1`` / ``top5`` (%): share of classifier neurons whose class name is the rank-0 concept /
  among the five best-ranked concepts.
* ``cos``: mean over neurons of ``cos_fn(top-1 prediction, class name)`` (paper semantics). The
  authors' TAB code encoded the (top-1, top-2) *pair* (reference §15 item 8); with
  ``tab_pair_cos=True`` the TAB predictions are passed to ``cos_fn`` as that 2-tuple.

Table 2 keeps, per method, the similarity function with the best top-1 (ties: top-5, then cos,
then the order of ``config.similarities``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.dissect.closed_methods import CLOSED_METHODS, ClosedMethod
from and_toolkit.experiments.paper import (
    SIMILARITIES,
    SIMILARITY_ALIASES,
    TABLE2,
    TABLE7,
    TABLE7_NOTEBOOK_AST_TAB_PAIR_COS,
    PaperModel,
)
from and_toolkit.experiments.rows import result_key, result_row
from and_toolkit.records.models import ResultRow

__all__ = ["METRICS", "CosFn", "LastLayerConfig", "last_layer_scores", "table2", "table7"]

METRICS: tuple[str, ...] = ("top1", "top5", "cos")
TAB_MODEL_NOTE = "TAB model:"
"""Prefix of the note part that names TAB's audio-text model when it was trained here (appended
to Table 2 / 7's TAB rows by the experiment stage; claim 1 quotes it)."""


def zero_shot_text(made: Mapping[str, Any]) -> str:
    """TAB's trained model's recorded zero-shot accuracy (``stages.closed.tab_model``) as
    ``"41.5 %"``, or ``"not measured"``."""
    zs = made.get("zero_shot_accuracy")
    return f"{100 * zs:.1f} %" if isinstance(zs, float) else "not measured"


CosFn = Callable[[Sequence[str | tuple[str, str]], Sequence[str]], npt.NDArray[np.floating[Any]]]
"""``cos_fn(preds, gts) -> cosines [n]``: cosine between the text embedding of ``preds[i]`` and of
``gts[i]`` (all-MiniLM in practice). A 2-tuple in ``preds`` is a text *pair* encoded as one input
(only with ``tab_pair_cos=True``)."""


class LastLayerConfig(BaseModel):
    """Configuration of Tables 7 and 2.

    Attributes:
        model: target-network id (``ConceptSet.model``); also the ResultRow model.
        layer: module path of the classifier layer (``ConceptSet.layer``).
        methods: Module A methods to report (default: all, in the paper's order).
        similarities: similarity ids reported for DB and TAB (ICL has similarity ``""``).
        icl_top1_similarity: ``ConceptSet.similarity`` of the ICL run used for top-1 and cos.
        icl_top5_similarity: ``ConceptSet.similarity`` of the ICL run used for top-5 (the
            authors ran a separate 5-answer prompt; equal labels = one run for both).
        tab_pair_cos: authors' compat: TAB cos on the (top-1, top-2) text pair.
        paper_model: paper model whose numbers go into ``paper_value`` (None: no paper value).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    layer: str = Field(min_length=1)
    methods: tuple[ClosedMethod, ...] = CLOSED_METHODS
    similarities: tuple[str, ...] = SIMILARITIES
    icl_top1_similarity: str = ""
    icl_top5_similarity: str = ""
    tab_pair_cos: bool = False
    paper_model: PaperModel | None = None

    @classmethod
    def reference(cls, **kwargs: Any) -> LastLayerConfig:
        """The authors' behaviour (TAB pair-encoded cos); other fields from ``kwargs``."""
        return cls(**{"tab_pair_cos": True, **kwargs})


def _predictions(rows: pl.DataFrame, n_classes: int, what: str) -> list[list[str]]:
    """Ranked concept names per classifier unit 0..n_classes-1.

    Raises:
        ValueError: a unit outside [0, n_classes) or a unit with no prediction.
    """
    units = set(rows["unit"].unique().to_list())
    extra = sorted(u for u in units if not 0 <= u < n_classes)
    missing = sorted(set(range(n_classes)) - units)
    if extra:
        raise ValueError(f"{what}: ConceptSet.unit {extra[:10]} outside the {n_classes} classes")
    if missing:
        raise ValueError(f"{what}: ConceptSet.unit has no prediction for units {missing[:10]}"
                         f" ({len(missing)} of {n_classes})")
    grouped = (rows.sort(["unit", "rank", "concept"])
               .group_by("unit", maintain_order=True).agg(pl.col("concept")))
    out: list[list[str]] = [[] for _ in range(n_classes)]
    for unit, concepts in grouped.iter_rows():
        out[unit] = list(concepts)
    return out


def _check_names(preds: list[list[str]], class_names: Sequence[str], what: str) -> None:
    known = set(class_names)
    unknown = sorted({c for p in preds for c in p} - known)
    if unknown:
        raise ValueError(f"{what}: ConceptSet.concept names not among the class names: "
                         f"{unknown[:10]} ({len(unknown)} unknown)")


def last_layer_scores(
    top1_preds: Sequence[Sequence[str]],
    top5_preds: Sequence[Sequence[str]],
    class_names: Sequence[str],
    cos_fn: CosFn,
    pair_cos: bool = False,
) -> dict[str, float]:
    """Top-1 %, top-5 % and mean cos for one (method, similarity).

    Args:
        top1_preds: per classifier unit j, its ranked concept names (element 0 is used for top-1
            and cos; element 1 too when ``pair_cos``).
        top5_preds: per unit j, ranked concept names of the run used for top-5 (first 5 used).
        class_names: ``class_names[j]`` = name of the class with target id j.
        cos_fn: see :data:`CosFn`.
        pair_cos: pass (top-1, top-2) pairs to ``cos_fn`` (authors' TAB compat).

    Returns:
        ``{"top1": %, "top5": %, "cos": mean cosine}``.

    Raises:
        ValueError: lengths differ, a unit has no prediction, or cos_fn returns a wrong shape.
    """
    n = len(class_names)
    if len(top1_preds) != n or len(top5_preds) != n:
        raise ValueError(f"predictions: expected {n} units, got {len(top1_preds)} / "
                         f"{len(top5_preds)}")
    if any(len(p) == 0 for p in top1_preds):
        raise ValueError("top1_preds: a unit has no prediction")
    top1 = np.mean([p[0] == g for p, g in zip(top1_preds, class_names, strict=True)])
    top5 = np.mean([g in list(p)[:5] for p, g in zip(top5_preds, class_names, strict=True)])
    inputs: list[str | tuple[str, str]] = [
        (p[0], p[1]) if pair_cos and len(p) > 1 else p[0] for p in top1_preds]
    cos = np.asarray(cos_fn(inputs, list(class_names)), dtype=np.float64)
    if cos.shape != (n,):
        raise ValueError(f"cos_fn: expected shape ({n},), got {cos.shape}")
    return {"top1": 100.0 * float(top1), "top5": 100.0 * float(top5), "cos": float(cos.mean())}


def _row(config: LastLayerConfig, experiment: str, key: str, method: str, series: str,
         metric: str, value: float | None, paper: float | None, note: str) -> dict[str, Any]:
    return result_row(experiment, key, metric, value, model=config.model, group=method,
                      series=series, paper_value=paper, note=note)


def _paper7(config: LastLayerConfig, method: str, series: str) -> dict[str, float] | None:
    if config.paper_model is None:
        return None
    cell = TABLE7.get((config.paper_model, method, SIMILARITY_ALIASES.get(series, series)))
    return None if cell is None else {"top1": cell.top1, "top5": cell.top5, "cos": cell.cos}


def table7(
    concepts: pl.DataFrame,
    class_names: Sequence[str],
    cos_fn: CosFn,
    config: LastLayerConfig,
    not_run: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Table 7: top-1 %, top-5 % and cos per (method, similarity) on the classifier layer.

    Args:
        concepts: ConceptSet frame (closed concepts; other models / layers / open rows are
            ignored). Rows of ``config.model`` / ``config.layer`` with ``rank`` 0 = best.
        class_names: ``class_names[j]`` = name of the class with target id j (= unit j).
        cos_fn: text-encoder cosine, see :data:`CosFn`.
        config: see :class:`LastLayerConfig`.
        not_run: reasons for methods (``"DB"``) or single cells (``"DB/rank_reorder"``) that were
            not run; they get rows with ``value`` null and note ``"not run: <reason>"``.

    Returns:
        ResultRow frame, experiment ``"table7"``: one row per (method, similarity, metric) with
        ``group`` = method, ``series`` = similarity (``""`` for ICL), metrics ``top1`` (%),
        ``top5`` (%), ``cos``; ``paper_value`` from paper Table 7.

    Raises:
        ValueError: duplicate class names; a method / similarity that is neither in ``concepts``
            nor in ``not_run``; a unit without prediction or outside the classes; concept names
            that are not class names (named in the message).
    """
    not_run = dict(not_run or {})
    names = list(class_names)
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"class_names: must be non-empty and unique, got {len(names)} names")
    mine = concepts.filter((pl.col("model") == config.model) & (pl.col("layer") == config.layer)
                           & (pl.col("kind") == "closed"))
    rows: list[dict[str, Any]] = []
    for method in config.methods:
        series_list = [""] if method == "ICL" else list(config.similarities)
        for series in series_list:
            reason = not_run.get(method, not_run.get(f"{method}/{series}"))
            paper = _paper7(config, method, series)
            values: dict[str, float | None] = dict.fromkeys(METRICS)
            note = f"not run: {reason}" if reason is not None else ""
            if reason is None:
                scores, note = _run_cell(mine, names, cos_fn, config, method, series)
                values.update(scores)
            for metric in METRICS:
                key = result_key(config.model, method, series or "-", metric)
                rows.append(_row(config, "table7", key, method, series, metric, values[metric],
                                 None if paper is None else paper[metric], note))
    return ResultRow.frame(rows)


def _run_cell(mine: pl.DataFrame, names: list[str], cos_fn: CosFn, config: LastLayerConfig,
              method: str, series: str) -> tuple[dict[str, float], str]:
    what = f"ConceptSet model={config.model!r} layer={config.layer!r} method={method!r}"
    if method == "ICL":
        sim1, sim5 = config.icl_top1_similarity, config.icl_top5_similarity
    else:
        sim1 = sim5 = series
    preds: dict[str, list[list[str]]] = {}
    for sim in dict.fromkeys((sim1, sim5)):
        sub = mine.filter((pl.col("method") == method) & (pl.col("similarity") == sim))
        if sub.height == 0:
            raise ValueError(f"{what} similarity={sim!r}: no rows; pass a reason in not_run "
                             f"(key {method!r} or {method + '/' + series!r}) if it was not run")
        preds[sim] = _predictions(sub, len(names), f"{what} similarity={sim!r}")
        _check_names(preds[sim], names, f"{what} similarity={sim!r}")
    pair = config.tab_pair_cos and method == "TAB"
    scores = last_layer_scores(preds[sim1], preds[sim5], names, cos_fn, pair_cos=pair)
    note = f"n={len(names)} classifier neurons"
    if pair:
        note += "; compat: cos on the (top-1, top-2) pair"
        if config.paper_model == "AST" and series in TABLE7_NOTEBOOK_AST_TAB_PAIR_COS:
            note += f" (authors' notebook: {TABLE7_NOTEBOOK_AST_TAB_PAIR_COS[series]:.4f})"
    if method == "ICL" and sim1 != sim5:
        note += f"; top-5 from ICL run {sim5!r}"
    return scores, note


def table2(table7_rows: pl.DataFrame, config: LastLayerConfig) -> pl.DataFrame:
    """Table 2: per method, the Table 7 similarity with the best top-1.

    Ties are broken by top-5, then cos, then the order of ``config.similarities``.

    Args:
        table7_rows: the frame returned by :func:`table7` (same ``config``).
        config: the Table 7 configuration (methods, similarities, paper model).

    Returns:
        ResultRow frame, experiment ``"table2"``: per method three rows (``top1`` %, ``top5`` %,
        ``cos``), ``series`` = the chosen similarity, ``paper_value`` from paper Table 2. A
        method with no run cell gets null values and its ``"not run: ..."`` note.

    Raises:
        ValueError: ``table7_rows`` lacks a method of ``config.methods``.
    """
    t7 = table7_rows.filter(pl.col("experiment") == "table7")
    rows: list[dict[str, Any]] = []
    for method in config.methods:
        sub = t7.filter(pl.col("group") == method)
        if sub.height == 0:
            raise ValueError(f"table7_rows: no rows for method {method!r}")
        order = [""] if method == "ICL" else list(config.similarities)
        cells: dict[str, dict[str, float | None]] = {}
        notes: dict[str, str] = {}
        for series, metric, value, note in sub.select(
                "series", "metric", "value", "note").iter_rows():
            cells.setdefault(series, {})[metric] = value
            notes[series] = note
        run = [s for s in order if s in cells and cells[s].get("top1") is not None]
        paper = TABLE2.get((config.paper_model, method)) if config.paper_model else None
        if run:
            best = max(run, key=lambda s: (cells[s]["top1"], cells[s].get("top5") or -1.0,
                                           cells[s].get("cos") or -2.0, -order.index(s)))
            values, series = cells[best], best
            note = (f"best of {len(run)} of {len(order)} similarity functions by top-1, "
                    f"ties by top-5" if method != "ICL" else notes[best])
        else:
            series = ""
            values = dict.fromkeys(METRICS)
            note = next((notes[s] for s in order if s in notes), "not run")
        for metric in METRICS:
            ref = None if paper is None else float(getattr(paper, metric))
            rows.append(_row(config, "table2", result_key(config.model, method, metric), method,
                             series, metric, values.get(metric), ref, note))
    return ResultRow.frame(rows)
