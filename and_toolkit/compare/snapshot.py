"""What a diff compares: a :class:`Snapshot`, loaded from a run or from a regression baseline.

A snapshot holds, per record kind, the columns the diff compares, as lazy Polars frames in one
canonical form (column names and dtypes below), so that a run and a baseline written by
:mod:`and_toolkit.compare.baseline` are compared by the same code. Loading a run reads every file
through :class:`and_toolkit.run.Run` paths and :func:`and_toolkit.store.scan_records`, which
checks each file's record kind and schema version (another version is refused) without
loading rows; nothing is read until a comparison collects.

Canonical frames (``unit`` Int32, floats Float64 unless stated):

* ``probe``: dataset, clip_id, index (Int32), sorted by index (probe order);
* ``neurons``: model, layer, unit: every neuron that any neuron-level record of the run holds;
* ``extremes``: model, layer, unit, side ('high' / 'low'), clip_ids (list[str], K),
  values (list[f32], K): the Extremes of the run's K;
* ``summaries``: model, layer, unit, side, points (list[str]);
* ``calibrated``: model, layer, unit, kept (list[str]);
* ``open``: model, layer, unit, concept, rank (Int32): ConceptSet rows of kind 'open', method
  'OCP', verdict 'kept';
* ``closed``: model, layer, unit, method, similarity, concept, rank (Int32), score (nullable):
  ConceptSet rows of kind 'closed' (every stored rank);
* ``results``: experiment, key, model, metric, value (nullable): every ResultRow.

A frame is None when the run holds no file of that kind (``present`` lists the kinds held).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from and_toolkit.errors import ConfigError
from and_toolkit.records.base import Record
from and_toolkit.records.models import (
    NEURON_KEY,
    ActivationTable,
    CalibratedSummary,
    ConceptSet,
    Extremes,
    ProbeClip,
    ResultRow,
    Summary,
)
from and_toolkit.run import Run
from and_toolkit.store import scan_records

KEY = list(NEURON_KEY)
COMPARED: tuple[type[Record], ...] = (
    ProbeClip, ActivationTable, Extremes, Summary, CalibratedSummary, ConceptSet, ResultRow)
"""Record kinds a snapshot holds (TrainingCurve and Caption are inputs, not explanations)."""

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "probe": {"dataset": pl.String(), "clip_id": pl.String(), "index": pl.Int32()},
    "neurons": {"model": pl.String(), "layer": pl.String(), "unit": pl.Int32()},
    "extremes": {"model": pl.String(), "layer": pl.String(), "unit": pl.Int32(),
                 "side": pl.String(), "clip_ids": pl.List(pl.String()),
                 "values": pl.List(pl.Float32())},
    "summaries": {"model": pl.String(), "layer": pl.String(), "unit": pl.Int32(),
                  "side": pl.String(), "points": pl.List(pl.String())},
    "calibrated": {"model": pl.String(), "layer": pl.String(), "unit": pl.Int32(),
                   "kept": pl.List(pl.String())},
    "open": {"model": pl.String(), "layer": pl.String(), "unit": pl.Int32(),
             "concept": pl.String(), "rank": pl.Int32()},
    "closed": {"model": pl.String(), "layer": pl.String(), "unit": pl.Int32(),
               "method": pl.String(), "similarity": pl.String(), "concept": pl.String(),
               "rank": pl.Int32(), "score": pl.Float64()},
    "results": {"experiment": pl.String(), "key": pl.String(), "model": pl.String(),
                "metric": pl.String(), "value": pl.Float64()},
}
"""Column names and dtypes of each canonical frame."""

SORT_KEYS: dict[str, list[str]] = {
    "probe": ["index"], "neurons": KEY, "extremes": [*KEY, "side"],
    "summaries": [*KEY, "side"], "calibrated": KEY, "open": [*KEY, "rank", "concept"],
    "closed": [*KEY, "method", "similarity", "rank", "concept"],
    "results": ["experiment", "key"],
}
"""Canonical row order of each frame (baselines are written and read in this order)."""


def canonical(name: str, lf: pl.LazyFrame) -> pl.LazyFrame:
    """Select and cast the columns of canonical frame ``name`` (no sort)."""
    return lf.select([pl.col(c).cast(t) for c, t in SCHEMAS[name].items()])


@dataclass(frozen=True)
class Snapshot:
    """The comparable content of one run (or baseline). Frames are lazy; see the module doc.

    Attributes:
        label: how reports name this side (the run path or the baseline file).
        present: record names the source holds.
        versions: schema version of each record kind held (the package's; other versions are
            refused on load).
    """

    label: str
    present: frozenset[str]
    versions: Mapping[str, int]
    neurons: pl.LazyFrame
    probe: pl.LazyFrame | None = None
    extremes: pl.LazyFrame | None = None
    summaries: pl.LazyFrame | None = None
    calibrated: pl.LazyFrame | None = None
    open: pl.LazyFrame | None = None
    closed: pl.LazyFrame | None = None
    results: pl.LazyFrame | None = None
    notes: tuple[str, ...] = field(default=())
    only: frozenset[str] | None = None
    """The parts a diff compares (names of :data:`PARTS`, set by :meth:`restricted`); None:
    all of them."""

    def frame(self, name: str) -> pl.LazyFrame | None:
        """The canonical frame ``name`` (see :data:`SCHEMAS`), or None."""
        return getattr(self, name)  # type: ignore[no-any-return]

    def restricted(self, parts: Iterable[str]) -> Snapshot:
        """The same snapshot with only ``parts`` compared (names of :data:`PARTS`); the others
        (and the neuron set, unless a neuron-level part is kept) are left out.

        Raises:
            ConfigError: an unknown part name.
        """
        keep = set(parts)
        unknown = sorted(keep - set(PARTS))
        if unknown:
            raise ConfigError(f"--only: unknown part(s) {unknown}; parts are {list(PARTS)}")
        records = {name: rec for name, rec in PART_RECORDS.items() if name in keep}
        neuron_level = keep & NEURON_PARTS
        changes: dict[str, Any] = {name: None for name in PARTS if name not in keep}
        if not neuron_level:
            changes["neurons"] = pl.DataFrame(schema=SCHEMAS["neurons"]).lazy()
        present = frozenset(r for r in self.present if r in set(records.values())
                            or (neuron_level and r == ActivationTable.record_name))
        return replace(self, present=present, versions={
            k: v for k, v in self.versions.items() if k in present}, only=frozenset(keep),
            **changes)

    @classmethod
    def from_run(cls, run: str | Path | Run) -> Snapshot:
        """The snapshot of a run directory (lazy: only file metadata is read here).

        Raises:
            DataError: the directory is missing or is not a run (no manifest.json, or an
                unreadable one).
            RecordValidationError: a record file of another kind or schema version, or not a
                readable Parquet file.
        """
        handle = Run.existing(run)
        present: set[str] = set()

        def scan(record: type[Record]) -> pl.LazyFrame | None:
            if not handle.has(record):
                return None
            present.add(record.record_name)
            return scan_records(record, handle.path(record))

        probe_lf = scan(ProbeClip)
        extremes_lf = (scan_records(Extremes, handle.extremes_path())
                       if handle.has_extremes() else None)
        if extremes_lf is not None:
            present.add(Extremes.record_name)
        summaries_lf, calibrated_lf, concepts_lf = (
            scan(Summary), scan(CalibratedSummary), scan(ConceptSet))
        key_frames = [lf.select(KEY) for lf in (extremes_lf, summaries_lf, calibrated_lf,
                                                concepts_lf) if lf is not None]
        files = handle.activation_files()
        if files:
            present.add(ActivationTable.record_name)
            key_frames.insert(0, scan_records(ActivationTable, files).select(KEY))
        neurons = (pl.concat([canonical("neurons", f) for f in key_frames]).unique()
                   if key_frames else pl.DataFrame(schema=SCHEMAS["neurons"]).lazy())
        results_lf = _results(handle)
        if results_lf is not None:
            present.add(ResultRow.record_name)

        def opt(name: str, lf: pl.LazyFrame | None) -> pl.LazyFrame | None:
            return None if lf is None else canonical(name, lf)

        return cls(
            label=str(handle.root), present=frozenset(present),
            versions={r.record_name: r.schema_version for r in COMPARED
                      if r.record_name in present},
            neurons=neurons,
            probe=opt("probe", probe_lf),
            extremes=opt("extremes", extremes_lf),
            summaries=opt("summaries", summaries_lf),
            calibrated=opt("calibrated", calibrated_lf),
            open=opt("open", None if concepts_lf is None else concepts_lf.filter(
                (pl.col("kind") == "open") & (pl.col("method") == "OCP")
                & (pl.col("verdict") == "kept"))),
            closed=opt("closed", None if concepts_lf is None else concepts_lf.filter(
                pl.col("kind") == "closed")),
            results=results_lf,
        )


PARTS: tuple[str, ...] = ("probe", "extremes", "summaries", "calibrated", "open", "closed",
                          "results")
"""What a diff can be restricted to (``--only``)."""
NEURON_PARTS = frozenset({"extremes", "summaries", "calibrated", "open", "closed"})
"""The parts compared per neuron: with none of them, the neuron sets are not compared."""
PART_RECORDS: dict[str, str] = {
    "probe": "ProbeClip", "extremes": "Extremes", "summaries": "Summary",
    "calibrated": "CalibratedSummary", "open": "ConceptSet", "closed": "ConceptSet",
    "results": "ResultRow"}
"""The record kind behind each part."""


def _results(run: Run) -> pl.LazyFrame | None:
    """Every ResultRow of the run (read and validated by :meth:`Run.results`; small), or None
    when the run holds no result file."""
    frames = run.results()
    if not frames:
        return None
    return canonical("results", pl.concat(list(frames.values())).lazy())
