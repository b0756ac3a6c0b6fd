"""What the explorer holds in memory for one run, read once through :class:`Run`.

:func:`load_tables` builds the frames the queries and pages use: the neuron view without its
activation vectors, the browse and closed-concept frames of :mod:`and_toolkit.explore.queries`,
the full ConceptSet and CalibratedSummary rows (every rank, dropped open concepts, the cosine of
each calibration drop), the probe table, the captions, and each method's description of every
neuron (the text raters see; :func:`and_toolkit.experiments.qualitative.descriptions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from and_toolkit.config import RunConfig, parse_config
from and_toolkit.errors import DataError
from and_toolkit.experiments.human_ratings import DESCRIBED_SIMILARITY
from and_toolkit.experiments.qualitative import DescriptionConfig, descriptions
from and_toolkit.records.models import CalibratedSummary, Caption, ConceptSet, ProbeClip
from and_toolkit.run import Run

KEY = ["model", "layer", "unit"]
RATED_METHODS: tuple[str, ...] = ("TAB", "DB", "SUM")
"""Methods whose descriptions raters score (the paper's Table 3 rows)."""


@dataclass(frozen=True)
class Tables:
    """In-memory frames of one run (see the module docstring).

    Attributes:
        run: the run.
        config: its configuration (the manifest's ``config``).
        view: the neuron view without ``activations`` (one row per neuron).
        browse, closed: the frames of :func:`and_toolkit.explore.queries.search`.
        concepts: every ConceptSet row.
        calibrated: every CalibratedSummary row.
        probe: ProbeClip rows, probe order.
        captions: ``{clip_id: caption}`` of the run's imported captioner (empty when the run
            has no captions yet).
        described: ``model, layer, unit`` + one nullable String column per method of
            :data:`RATED_METHODS` (and ICL).
    """

    run: Run
    config: RunConfig
    view: pl.DataFrame
    browse: pl.DataFrame
    closed: pl.DataFrame
    concepts: pl.DataFrame
    calibrated: pl.DataFrame
    probe: pl.DataFrame
    captions: dict[str, str]
    described: pl.DataFrame

    def neuron(self, model: str, layer: str, unit: int) -> dict[str, Any] | None:
        """The view row of one neuron, or None."""
        rows = self.view.filter((pl.col("model") == model) & (pl.col("layer") == layer)
                                & (pl.col("unit") == unit))
        return rows.row(0, named=True) if rows.height else None

    def description(self, model: str, layer: str, unit: int, method: str) -> str | None:
        """One method's description of one neuron ("" or None when it has none)."""
        if method not in self.described.columns:
            return None
        rows = self.described.filter((pl.col("model") == model) & (pl.col("layer") == layer)
                                     & (pl.col("unit") == unit))
        return rows[method][0] if rows.height else None


def run_config(run: Run) -> RunConfig:
    """The run's configuration from its manifest.

    Raises:
        DataError: no manifest or no ``config`` in it.
    """
    manifest = run.manifest()
    if "config" not in manifest:
        raise DataError(f"{run.manifest_path}: field 'config' is missing (not a run directory, "
                        "or the run never started)")
    return parse_config(manifest["config"], f"{run.manifest_path}: config")


def _joined(col: str) -> pl.Expr:
    return pl.col(col).fill_null([]).list.join(" ")


def _browse(view: pl.DataFrame) -> pl.DataFrame:
    """One row per neuron with the display summary and the lower-cased search text."""
    for col, dtype in (("calibrated", pl.List(pl.String)), ("summary_high", pl.List(pl.String)),
                       ("summary_low", pl.List(pl.String)), ("open_concepts", pl.List(pl.String)),
                       ("nouns", pl.List(pl.String)), ("verbs", pl.List(pl.String))):
        if col not in view.columns:
            view = view.with_columns(pl.lit(None, dtype).alias(col))
    if "closed_top1" in view.columns:
        closed_text = pl.col("closed_top1").fill_null([]).list.eval(
            pl.element().struct.field("concept")).list.unique().list.join(" ")
    else:
        closed_text = pl.lit("")
    summary = pl.when(pl.col("calibrated").list.len() > 0).then(_joined("calibrated")).otherwise(
        _joined("summary_high"))
    search = pl.concat_str([pl.col("alias"), pl.col("layer"), _joined("summary_high"),
                            _joined("summary_low"), closed_text, _joined("open_concepts"),
                            _joined("nouns"), _joined("verbs")], separator=" ")
    return view.select(
        *KEY, "alias", "block", summary.fill_null("").alias("summary"),
        pl.col("open_concepts").fill_null([]),
        search.str.to_lowercase().str.replace_all("_", " ").alias("search"))


def _closed(concepts: pl.DataFrame) -> pl.DataFrame:
    return (concepts.filter((pl.col("kind") == "closed") & (pl.col("rank") == 0))
            .select(*KEY, "method", "similarity", "concept", "score"))


def load_tables(run: Run) -> Tables:
    """Read everything the explorer shows from ``run`` (about 1 s for 14,630 neurons).

    Raises:
        DataError: no manifest config, no recorded neurons, or captions missing the run's
            captioner.
    """
    config = run_config(run)
    try:
        lf = run.neurons()
    except FileNotFoundError as exc:
        raise DataError(str(exc)) from None
    if "alias" not in lf.collect_schema().names():
        raise DataError(f"{run.root}/activations: no ActivationTable (run the record stage)")
    view = lf.drop("activations").collect()
    concepts = run.read(ConceptSet) if run.has(ConceptSet) else ConceptSet.empty()
    calibrated = (run.read(CalibratedSummary) if run.has(CalibratedSummary)
                  else CalibratedSummary.empty())
    captions = run.captions(config.captions.captioner_id) if run.has(Caption) else {}
    described = descriptions(view.select(KEY), calibrated, concepts,
                             DescriptionConfig(similarity=dict(DESCRIBED_SIMILARITY)))
    return Tables(run=run, config=config, view=view, browse=_browse(view),
                  closed=_closed(concepts), concepts=concepts, calibrated=calibrated,
                  probe=run.read(ProbeClip).sort("index"), captions=captions,
                  described=described)
