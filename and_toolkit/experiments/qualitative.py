"""Qualitative outputs and human evaluation: Table 6, Table 3 and the annotation sheet.

Reference: reference-spec §11; paper Sec 4.2 (Table 3) and Appendix B.2 (Table 6).

* :func:`qualitative_table` (Table 6): N random neurons per model (seeded) with their top-clip
  labels, S_h, S_h^c, the top DB / TAB / ICL concept and the open-set concepts.
* :func:`annotation_sheet`: N random neurons per (model, block) with their top clips and each
  method's description, one row per (neuron, method), with empty ``rating`` (1-5) and
  ``human_summary`` columns for people to fill in (the paper: 10 AST neurons per block, 5 top
  clips, "Does the given description accurately describe most of these audio clips?").
* :func:`load_annotations` reads a filled sheet (CSV); :func:`human_evaluation` (Table 3)
  turns it into mean rating and mean cosine (injected TextEncoder) between each method's
  description and the human summary. BERTScore needs roberta-large from the hub: reported as
  "not run".

The paper's Table 3 used the Kumar et al. (2017) concept set for TAB / DB, which is not
available; the descriptions here come from whatever concept set the run used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.dissect.closed_methods import CLOSED_METHODS
from and_toolkit.errors import DataError
from and_toolkit.experiments.adjectives import KEY, open_adjectives, require_columns
from and_toolkit.experiments.paper import TABLE3
from and_toolkit.experiments.rows import neuron_part, result_key, result_row
from and_toolkit.interfaces import TextEncoder, l2_normalise
from and_toolkit.records.models import ResultRow

SHEET_COLUMNS = ("model", "layer", "unit", "block", "clip_ids", "clip_paths", "method",
                 "description", "rating", "human_summary")
BERTSCORE_NOTE = "not run: bert-score needs roberta-large from the hub"


class DescriptionConfig(BaseModel):
    """Where each method's description of a neuron comes from.

    Attributes:
        similarity: ConceptSet.similarity of the closed-set run shown per method (defaults:
            the paper's best AST similarity functions in Table 7; ICL has "").
        open_method, open_pos: ConceptSet rows of C_open-set (Module C).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    similarity: dict[str, str] = Field(
        default_factory=lambda: {"DB": "cos_cubed", "TAB": "wpmi", "ICL": ""})
    open_method: str = "OCP"
    open_pos: str | None = "ADJ"


class QualitativeConfig(DescriptionConfig):
    """Table 6 settings.

    Attributes:
        n_per_model: neurons sampled per model.
        seed: sampling seed (numpy ``default_rng``).
        experiment: experiment id of the rows.
    """

    n_per_model: int = Field(default=5, ge=1)
    seed: int = 0
    experiment: str = "table6"


class AnnotationConfig(DescriptionConfig):
    """Annotation-sheet settings.

    Attributes:
        n_per_block: neurons sampled per (model, block); head neurons (null block) are left
            out, as the paper's 10 neurons per transformer block.
        seed: sampling and method-order seed.
        methods: described methods: "TAB", "DB", "ICL" (top closed concept) or "SUM"
            (S_h^c, kept points joined by spaces).
        shuffle_methods: shuffle the method rows of each neuron (raters do not see a fixed
            order); False keeps ``methods`` order.
        include_labels: add a ``clip_labels`` column (ground-truth classes; off for blind
            rating).
    """

    n_per_block: int = Field(default=10, ge=1)
    seed: int = 0
    methods: tuple[Literal["TAB", "DB", "ICL", "SUM"], ...] = ("TAB", "DB", "SUM")
    shuffle_methods: bool = True
    include_labels: bool = False


class HumanEvalConfig(BaseModel):
    """Table 3 settings.

    Attributes:
        methods: methods reported, in order.
        experiment: experiment id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    methods: tuple[str, ...] = ("TAB", "DB", "SUM")
    experiment: str = "table3"


# ----- shared pieces ----------------------------------------------------------------------------
def _sample(neurons: pl.DataFrame, by: list[str], n: int, seed: int) -> pl.DataFrame:
    """Up to ``n`` random rows per group, reproducible: groups and rows sorted first."""
    rng = np.random.default_rng(seed)
    parts = []
    for _, group in neurons.sort([*by, *KEY]).group_by(by, maintain_order=True):
        idx = np.sort(rng.choice(group.height, size=min(n, group.height), replace=False))
        parts.append(group[idx.tolist()])
    return pl.concat(parts) if parts else neurons.clear()


def _top_closed(concepts: pl.DataFrame, config: DescriptionConfig) -> pl.DataFrame:
    """Rank-0 closed concept per (neuron, method) with the configured similarity.

    Raises:
        ValueError: a method has rows but none with its configured similarity.
    """
    require_columns(concepts, [*KEY, "method", "similarity", "concept", "kind", "rank"],
                    "concepts")
    closed = concepts.filter((pl.col("kind") == "closed") & (pl.col("rank") == 0))
    parts = []
    for method in CLOSED_METHODS:
        rows = closed.filter(pl.col("method") == method)
        if rows.height == 0:
            continue
        sim = config.similarity.get(method, "")
        chosen = rows.filter(pl.col("similarity") == sim)
        if chosen.height == 0:
            raise ValueError(f"concepts: method {method!r} has no similarity {sim!r}; "
                             f"available {sorted(rows['similarity'].unique().to_list())}")
        parts.append(chosen.select(*KEY, "method", "concept"))
    if not parts:
        return pl.DataFrame(schema={"model": pl.String, "layer": pl.String, "unit": pl.Int32,
                                    "method": pl.String, "concept": pl.String})
    return pl.concat(parts).unique([*KEY, "method"], keep="first")


def _top_clips(sample: pl.DataFrame, extremes: pl.DataFrame,
               probe: pl.DataFrame) -> pl.DataFrame:
    """``clip_ids``, ``clip_labels``, ``clip_paths`` (lists) of each sampled neuron's top-K."""
    require_columns(extremes, [*KEY, "side", "clip_ids"], "extremes")
    require_columns(probe, ["clip_id", "label", "path"], "probe")
    if probe["clip_id"].is_duplicated().any():
        raise ValueError("probe: duplicate clip_id (pass the clips of one dataset)")
    high = extremes.filter(pl.col("side") == "high").select(*KEY, "clip_ids")
    out = sample.select(*KEY).join(high, on=list(KEY), how="left")
    if out["clip_ids"].null_count():
        bad = out.filter(pl.col("clip_ids").is_null()).select(*KEY).row(0)
        raise ValueError(f"extremes: no 'high' row for neuron {bad}")
    long = (out.with_row_index("_i").explode("clip_ids").with_row_index("_j")
            .rename({"clip_ids": "clip_id"}).join(probe.select("clip_id", "label", "path"),
                                                  on="clip_id", how="left"))
    if long["label"].null_count():
        bad_ids = long.filter(pl.col("label").is_null())["clip_id"].unique().head(5).to_list()
        raise ValueError(f"probe: top-K clips missing from the probe set, e.g. {bad_ids}")
    return (long.sort("_j").group_by(["_i", *KEY], maintain_order=True)
            .agg(pl.col("clip_id").alias("clip_ids"), pl.col("label").alias("clip_labels"),
                 pl.col("path").alias("clip_paths")).drop("_i"))


def _kept_points(calibrated: pl.DataFrame) -> pl.DataFrame:
    require_columns(calibrated, [*KEY, "kept"], "calibrated")
    return calibrated.select(*KEY, pl.col("kept").alias("s_h_c"))


def descriptions(keys: pl.DataFrame, calibrated: pl.DataFrame, concepts: pl.DataFrame,
                  config: DescriptionConfig) -> pl.DataFrame:
    """``keys`` plus one nullable String column per method: DB, TAB, ICL (rank-0 concept with
    the configured similarity) and SUM (S_h^c points joined by spaces)."""
    closed = _top_closed(concepts, config)
    out = keys
    for method in CLOSED_METHODS:
        out = out.join(closed.filter(pl.col("method") == method)
                       .select(*KEY, pl.col("concept").alias(method)), on=list(KEY), how="left")
    sums = _kept_points(calibrated).select(*KEY, pl.col("s_h_c").list.join(" ").alias("SUM"))
    return out.join(sums, on=list(KEY), how="left")


# ----- Table 6 ----------------------------------------------------------------------------------
def qualitative_table(neurons: pl.DataFrame, extremes: pl.DataFrame, probe: pl.DataFrame,
                      summaries: pl.DataFrame, calibrated: pl.DataFrame, concepts: pl.DataFrame,
                      config: QualitativeConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Table 6: outputs of every module for N random neurons per model.

    Args:
        neurons: the population, one row per neuron (``model, layer, unit, block, alias``).
        extremes: Extremes frame (side 'high' = the top-K clips shown).
        probe: ProbeClip frame of the probing set (clip labels and paths).
        summaries: Summary frame (side 'high' points = S_h).
        calibrated: CalibratedSummary frame (kept = S_h^c).
        concepts: ConceptSet frame (closed rank-0 concepts and kept open concepts).
        config: sample size, seed, similarity per method, open-concept selection.

    Returns:
        (rows, table). ``table``: ``model, layer, unit, block, alias, clip_ids, clip_labels,
        clip_paths, s_h, s_h_c, open_concepts`` (lists; empty when the record is absent) and
        one nullable String column per closed method ``DB, TAB, ICL``. ``rows`` is a
        ResultRow frame with per neuron (key "<model>/<layer>#<unit>") metrics
        "n_top_label_majority" (count of the most common top-clip label), "n_s_h_points",
        "n_s_h_c_points" and "n_open_concepts" (group = layer, series = unit). Turn
        ``table`` into the report's free-form table with
        ``ExtraTable.from_rows(title, table.to_dicts())``.

    Raises:
        ValueError: missing columns, unknown clips, or a sampled neuron without Extremes.
    """
    require_columns(neurons, [*KEY, "block", "alias"], "neurons")
    require_columns(summaries, [*KEY, "side", "points"], "summaries")
    sample = _sample(neurons.select(*KEY, "block", "alias"), ["model"], config.n_per_model,
                     config.seed)
    s_h = summaries.filter(pl.col("side") == "high").select(*KEY, pl.col("points").alias("s_h"))
    opened = (open_adjectives(concepts, config.open_method, config.open_pos)
              .group_by(*KEY).agg(pl.col("concept").alias("open_concepts")))
    table = (sample.join(_top_clips(sample, extremes, probe), on=list(KEY), how="left")
             .join(s_h, on=list(KEY), how="left").join(_kept_points(calibrated), on=list(KEY), how="left")
             .join(opened, on=list(KEY), how="left"))
    table = descriptions(table, calibrated, concepts, config).drop("SUM")
    empty = pl.lit([], dtype=pl.List(pl.String))
    table = table.with_columns(pl.col(c).fill_null(empty)
                               for c in ("s_h", "s_h_c", "open_concepts"))
    rows = []
    for r in table.iter_rows(named=True):
        neuron = neuron_part(r["layer"], r["unit"])
        labels = list(r["clip_labels"])
        majority = max((labels.count(x) for x in labels), default=0)
        for metric, v in (("n_top_label_majority", majority), ("n_s_h_points", len(r["s_h"])),
                          ("n_s_h_c_points", len(r["s_h_c"])),
                          ("n_open_concepts", len(r["open_concepts"]))):
            rows.append(result_row(config.experiment, result_key(r["model"], neuron, metric),
                                   metric, float(v), model=r["model"], group=r["layer"],
                                   series=str(r["unit"])))
    return ResultRow.frame(rows), table


# ----- annotation sheet and Table 3 -------------------------------------------------------------
def annotation_sheet(neurons: pl.DataFrame, extremes: pl.DataFrame, probe: pl.DataFrame,
                     calibrated: pl.DataFrame, concepts: pl.DataFrame,
                     config: AnnotationConfig) -> pl.DataFrame:
    """A sheet for human rating: N random neurons per block, one row per (neuron, method).

    Write it with ``sheet.write_csv(path)``; read the filled file with
    :func:`load_annotations`.

    Args:
        neurons: the population (``model, layer, unit, block, alias``); null-block neurons are
            skipped.
        extremes: Extremes frame (side 'high').
        probe: ProbeClip frame (clip paths, relative to the dataset root).
        calibrated: CalibratedSummary frame (S_h^c for "SUM").
        concepts: ConceptSet frame (closed rank-0 concepts).
        config: sample size, seed, methods, similarities, order and label options.

    Returns:
        Frame with :data:`SHEET_COLUMNS` (``clip_ids`` / ``clip_paths`` joined by ";",
        ``rating`` Int64 null, ``human_summary`` String null), plus ``clip_labels`` if
        ``config.include_labels``. A method without output for a neuron has description "".

    Raises:
        ValueError: missing columns, unknown clips, or a sampled neuron without Extremes.
    """
    require_columns(neurons, [*KEY, "block", "alias"], "neurons")
    pop = neurons.filter(pl.col("block").is_not_null()).select(*KEY, "block")
    sample = _sample(pop, ["model", "block"], config.n_per_block, config.seed)
    rng = np.random.default_rng([config.seed, 1])
    rows = []
    base = descriptions(sample.join(_top_clips(sample, extremes, probe), on=list(KEY), how="left"),
                         calibrated, concepts, config)
    for r in base.iter_rows(named=True):
        order = list(config.methods)
        if config.shuffle_methods:
            order = [order[i] for i in rng.permutation(len(order))]
        for method in order:
            row = {"model": r["model"], "layer": r["layer"], "unit": r["unit"],
                   "block": r["block"], "clip_ids": ";".join(r["clip_ids"]),
                   "clip_paths": ";".join(r["clip_paths"]), "method": method,
                   "description": r.get(method) or "", "rating": None, "human_summary": None}
            if config.include_labels:
                row["clip_labels"] = ";".join(r["clip_labels"])
            rows.append(row)
    schema = {"model": pl.String, "layer": pl.String, "unit": pl.Int32, "block": pl.Int32,
              "clip_ids": pl.String, "clip_paths": pl.String, "method": pl.String,
              "description": pl.String, "rating": pl.Int64, "human_summary": pl.String}
    if config.include_labels:
        schema["clip_labels"] = pl.String
    return pl.DataFrame(rows, schema=schema)


def load_annotations(path: str | Path) -> pl.DataFrame:
    """Read and check a filled annotation sheet (CSV of :func:`annotation_sheet`).

    Required columns: ``model, layer, unit, method, description, rating, human_summary``;
    an optional ``rater`` column distinguishes raters. ``rating`` is empty (not rated) or an
    integer 1..5; empty ``human_summary`` cells are null.

    Args:
        path: CSV file.

    Returns:
        Frame with ``unit`` Int32, ``rating`` Int64 (nullable), strings elsewhere.

    Raises:
        DataError: unreadable file, missing columns, or a bad ``unit`` / ``rating`` value
            (naming the file, the field and the first offending row).
    """
    path = Path(path)
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"{path}: cannot read annotations: {exc}") from exc
    need = ["model", "layer", "unit", "method", "description", "rating", "human_summary"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: annotations miss columns {missing}")
    df = raw.with_columns(pl.col(c).fill_null("") for c in ("description", "model", "layer",
                                                            "method"))
    df = df.with_columns(pl.col("human_summary").str.strip_chars().replace("", None),
                         pl.col("rating").str.strip_chars().replace("", None))
    unit = df["unit"].str.strip_chars().cast(pl.Int32, strict=False)
    if unit.null_count():
        i = unit.is_null().arg_true()[0]
        raise DataError(f"{path}: field 'unit', row {i + 2}: not an integer: {df['unit'][i]!r}")
    rating = df["rating"].cast(pl.Float64, strict=False)
    bad = (df["rating"].is_not_null() & (rating.is_null() | ~rating.is_in(
        [1.0, 2.0, 3.0, 4.0, 5.0]))).fill_null(True)
    if bad.any():
        i = bad.arg_true()[0]
        raise DataError(f"{path}: field 'rating', row {i + 2}: expected an integer 1-5 or "
                        f"empty, got {df['rating'][i]!r}")
    return df.with_columns(unit.alias("unit"), rating.cast(pl.Int64).alias("rating"))


def _human_summaries(ann: pl.DataFrame) -> pl.Series:
    """Each row's human summary: its own, else the neuron's single distinct one, else null."""
    group = [*KEY, "rater"] if "rater" in ann.columns else list(KEY)
    distinct = pl.col("human_summary").drop_nulls().unique()
    fill = pl.when(distinct.len().over(group) == 1).then(
        pl.col("human_summary").drop_nulls().first().over(group))
    return ann.select(pl.coalesce(pl.col("human_summary"), fill).alias("h"))["h"]


def human_evaluation(annotations: pl.DataFrame, encoder: TextEncoder,
                     config: HumanEvalConfig) -> pl.DataFrame:
    """Table 3: mean rating and description-vs-human cosine per method.

    Ratings and cosines are first averaged per neuron (over raters), then over neurons. The
    human summary of a row is its own ``human_summary``, or, if empty, the neuron's (rater's)
    single distinct non-empty summary; rows without one, or with an empty description, do
    not enter the cosine.

    Args:
        annotations: :func:`load_annotations` output.
        encoder: sentence encoder (rows L2-normalised; normalised again here).
        config: methods and experiment id.

    Returns:
        ResultRow frame, group = method, x null: "rating", "n_rating" (neurons), "cos" (the
        encoder id in ``note``), "n_cos" and "bertscore" (null, "not run"), with the paper's
        values.

    Raises:
        ValueError: missing columns.
    """
    require_columns(annotations, [*KEY, "method", "description", "rating", "human_summary"],
                    "annotations")
    ann = annotations.with_columns(_human_summaries(annotations).alias("_human"))
    pairs = ann.filter((pl.col("description") != "") & pl.col("_human").is_not_null())
    texts = list(dict.fromkeys([*pairs["description"].to_list(), *pairs["_human"].to_list()]))
    emb = l2_normalise(encoder.encode(texts)) if texts else np.zeros((0, 1), np.float32)
    index = {t: i for i, t in enumerate(texts)}
    cos = [float(emb[index[d]] @ emb[index[h]]) for d, h in
           zip(pairs["description"].to_list(), pairs["_human"].to_list(), strict=True)]
    pairs = pairs.with_columns(pl.Series("cos", cos, dtype=pl.Float64))
    rows = []
    exp = config.experiment
    for method in config.methods:
        paper = TABLE3.get(method)
        rated = (ann.filter((pl.col("method") == method) & pl.col("rating").is_not_null())
                 .group_by(*KEY).agg(pl.col("rating").mean()))
        cos_m = (pairs.filter(pl.col("method") == method).group_by(*KEY)
                 .agg(pl.col("cos").mean()))
        for metric, frame, pv, note in (
                ("rating", rated, paper.rating if paper else None, ""),
                ("cos", cos_m, paper.cos if paper else None, f"encoder: {encoder.id}")):
            value = float(frame[metric].mean()) if frame.height else None  # type: ignore[arg-type]
            rows.append(result_row(exp, result_key(method, metric), metric, value, group=method,
                                   paper_value=pv, note=note if frame.height else
                                   "no annotations"))
            rows.append(result_row(exp, result_key(method, f"n_{metric}"), f"n_{metric}",
                                   float(frame.height), group=method))
        rows.append(result_row(exp, result_key(method, "bertscore"), "bertscore", None,
                               group=method, paper_value=paper.bertscore if paper else None,
                               note=BERTSCORE_NOTE))
    return ResultRow.frame(rows)
