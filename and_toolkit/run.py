"""A run directory: where one configuration's records, manifest and report live.

Layout (see docs/architecture.md)::

    <run>/manifest.json
    <run>/probe.parquet, captions.parquet, extremes.parquet, summaries.parquet,
          calibrated.parquet, concepts.parquet, training.parquet, scores.parquet
    <run>/extremes_k<K>.parquet                      (extra K)
    <run>/activations/model=<m>/layer=<l>/data.parquet
    <run>/results/<experiment>.parquet
    <run>/experiments/table6_neurons.json, <run>/annotation_sheet.csv
    <run>/report/index.html, <run>/report/summary.json
    <run>/ratings.parquet                            (human ratings, from the explorer)

:class:`Run` is the one place that knows this layout: every path is built here, and every
record is read through its typed readers (which go through :mod:`and_toolkit.store`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.errors import DataError
from and_toolkit.neuron_view import neuron_view
from and_toolkit.records.base import Record
from and_toolkit.records.models import (
    NEURON_KEY,
    ActivationTable,
    CalibratedSummary,
    Caption,
    ConceptSet,
    ExplanationScore,
    Extremes,
    ProbeClip,
    Rating,
    ResultRow,
    Summary,
    TrainingCurve,
)
from and_toolkit.store import (
    provenance_of,
    read_records,
    scan_records,
    write_record_chunks,
    write_records,
)

FILES: dict[type[Record], str] = {
    ProbeClip: "probe.parquet",
    Caption: "captions.parquet",
    Extremes: "extremes.parquet",
    Summary: "summaries.parquet",
    CalibratedSummary: "calibrated.parquet",
    ConceptSet: "concepts.parquet",
    TrainingCurve: "training.parquet",
    Rating: "ratings.parquet",
    ExplanationScore: "scores.parquet",
}
"""Record kinds stored as one file per run."""

VARIANT_FILES: dict[tuple[type[Record], str], str] = {
    (Summary, "descriptors"): "summaries_descriptors.parquet",
    (CalibratedSummary, "descriptors"): "calibrated_descriptors.parquet",
}
"""Files of the dissection's caption variant (``records.CAPTION_VARIANTS``): summaries and
calibrated summaries of the captions + descriptor sentences. The primary files (variant "")
hold the imported captions alone."""

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _safe(part: str) -> str:
    """A path component for a model, layer or experiment id.

    Raises:
        ValueError: not ``[A-Za-z0-9][A-Za-z0-9_.+-]*``, or containing ``..``.
    """
    if not _SAFE_ID.match(part) or ".." in part:
        raise ValueError(f"{part!r} is not a safe path component: it must match "
                         f"{_SAFE_ID.pattern} (no '/', no '..')")
    return part


@dataclass(frozen=True)
class LayerActivations:
    """The activation matrix of one recorded layer.

    Attributes:
        model, layer: the layer's neuron-key parts.
        units: int64 [n] unit indices, ascending.
        values: float32 [N, n] activations (probe clips in probe order x units), writable.
    """

    model: str
    layer: str
    units: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Run:
    """Handle on a run directory. Creating the handle does not touch the disk."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> Run:
        """A run rooted at ``path``."""
        return cls(Path(path))

    @classmethod
    def existing(cls, path: str | Path | Run) -> Run:
        """A run that exists: a directory holding a readable ``manifest.json`` (a JSON object).

        Raises:
            DataError: one line naming the path: missing, not a directory, no manifest.json
                (not a run), or an unreadable manifest.
        """
        run = path if isinstance(path, Run) else cls(Path(path))
        root, manifest = run.root, run.manifest_path
        if not root.exists():
            raise DataError(f"{root}: no such run directory")
        if not root.is_dir():
            raise DataError(f"{root}: not a directory, so not a run")
        if not manifest.is_file():
            raise DataError(f"{root}: not a run (no manifest.json)")
        try:
            data = json.loads(manifest.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{manifest}: unreadable manifest: {exc}") from None
        if not isinstance(data, dict):
            raise DataError(f"{manifest}: the manifest is not a JSON object")
        return run

    # ----- paths ------------------------------------------------------------------------------
    def path(self, record: type[Record], variant: str = "") -> Path:
        """The file of a one-file-per-run record kind (of a caption ``variant``, see
        :data:`VARIANT_FILES`; "" = the primary file).

        Raises:
            ValueError: a variant this record kind has no file for.
        """
        if not variant:
            return self.root / FILES[record]
        if (record, variant) not in VARIANT_FILES:
            raise ValueError(f"{record.record_name} has no file for caption variant {variant!r}")
        return self.root / VARIANT_FILES[(record, variant)]

    def activation_path(self, model: str, layer: str) -> Path:
        """The ActivationTable file of one layer."""
        return self.root / "activations" / f"model={_safe(model)}" / f"layer={_safe(layer)}" / (
            "data.parquet")

    def extremes_path(self, k: int | None = None) -> Path:
        """The Extremes file of the run's K (``k=None``) or of an extra K."""
        return self.path(Extremes) if k is None else self.root / f"extremes_k{int(k)}.parquet"

    def result_path(self, experiment: str) -> Path:
        """The ResultRow file of one experiment."""
        return self.root / "results" / f"{_safe(experiment)}.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def report_path(self) -> Path:
        return self.root / "report" / "index.html"

    @property
    def table6_path(self) -> Path:
        """Table 6's sampled neurons (JSON list of rows), an extra table of the report."""
        return self.root / "experiments" / "table6_neurons.json"

    @property
    def annotation_sheet_path(self) -> Path:
        """The CSV sheet of neurons to rate for Table 3's human evaluation."""
        return self.root / "annotation_sheet.csv"

    # ----- one-file records -------------------------------------------------------------------
    def has(self, record: type[Record], variant: str = "") -> bool:
        """Whether the run holds a file of this record kind (and caption variant)."""
        return self.path(record, variant).is_file()

    def write(self, record: type[Record], df: pl.DataFrame, variant: str = "",
              **provenance: Any) -> Path:
        """Write a one-file-per-run record kind (validated, atomic); ``variant`` as
        :meth:`path`."""
        return write_records(record, df, self.path(record, variant), provenance=provenance)

    def read(self, record: type[Record], variant: str = "") -> pl.DataFrame:
        """Read and validate a one-file-per-run record kind; ``variant`` as :meth:`path`."""
        return read_records(record, self.path(record, variant))

    def remove(self, record: type[Record], variant: str) -> None:
        """Delete a variant file if present (a re-run with the variant switched off)."""
        self.path(record, variant).unlink(missing_ok=True)

    def provenance(self, record: type[Record]) -> dict[str, Any]:
        """The provenance stored with a one-file-per-run record kind."""
        return provenance_of(self.path(record))

    def rows(self, record: type[Record]) -> int:
        """Row count of a one-file-per-run record kind (metadata checked, rows not read)."""
        return int(scan_records(record, self.path(record)).select(pl.len()).collect().item())

    def captions(self, captioner: str) -> dict[str, str]:
        """``{clip_id: caption}`` of one captioner.

        Raises:
            DataError: the run holds no caption of that captioner.
        """
        caps = self.read(Caption).filter(pl.col("captioner") == captioner)
        if caps.height == 0:
            raise DataError(f"{self.path(Caption)}: no captions of captioner {captioner!r}")
        return dict(zip(caps["clip_id"].to_list(), caps["text"].to_list(), strict=True))

    def replace_concepts(self, kind: Literal["open", "closed"], df: pl.DataFrame,
                         **provenance: Any) -> Path:
        """Write ConceptSet rows of one kind, keeping the run's rows of the other kind."""
        other = "closed" if kind == "open" else "open"
        if df.height and set(df["kind"].unique().to_list()) != {kind}:
            raise ValueError(f"replace_concepts({kind!r}): the frame holds other kinds")
        kept = (self.read(ConceptSet).filter(pl.col("kind") == other) if self.has(ConceptSet)
                else ConceptSet.empty())
        return self.write(ConceptSet, pl.concat([kept, df]), **provenance)  # sorted on write

    # ----- extremes ---------------------------------------------------------------------------
    def has_extremes(self, k: int | None = None) -> bool:
        """Whether the run holds the Extremes of the run's K (None) or of an extra K."""
        return self.extremes_path(k).is_file()

    def extremes_ks(self) -> list[int]:
        """The extra K of every ``extremes_k<K>.parquet`` the run holds, ascending."""
        return sorted(int(m[1]) for p in self.root.glob("extremes_k*.parquet")
                      if (m := re.fullmatch(r"extremes_k(\d+)\.parquet", p.name)))

    def extremes(self, k: int | None = None) -> pl.DataFrame:
        """Extremes of the run's K (``k=None``) or of an extra K (DataError: an extra K that
        the manifest's ``stages.extremes.extra_k`` does not list, a stale file)."""
        listed = self.stage_info("extremes").get("extra_k", [k]) if k is not None else [k]
        if k not in listed:
            raise DataError(f"{self.extremes_path(k)}: K = {k} is not in stages.extremes.extra_k"
                            f" {listed} of {self.manifest_path} (a stale file)")
        return read_records(Extremes, self.extremes_path(k))

    def write_extremes(self, df: pl.DataFrame, k: int | None = None,
                       provenance: Mapping[str, Any] | None = None) -> Path:
        """Write the Extremes of the run's K (``k=None``) or of an extra K."""
        return write_records(Extremes, df, self.extremes_path(k), provenance=provenance)

    # ----- activations ------------------------------------------------------------------------
    def write_activations(self, df: pl.DataFrame, **provenance: Any) -> Path:
        """Write the ActivationTable rows of exactly one (model, layer)."""
        pairs = df.select("model", "layer").unique()
        if pairs.height != 1:
            raise ValueError(f"write_activations takes one (model, layer); got {pairs.height}")
        model, layer = pairs.row(0)
        return write_records(
            ActivationTable, df, self.activation_path(model, layer), provenance=provenance
        )

    def write_activation_chunks(self, model: str, layer: str, chunks: Iterable[pl.DataFrame],
                                /, **provenance: Any) -> Path:
        """Write one (model, layer)'s ActivationTable rows arriving in unit-ordered chunks (one
        row group each; memory: one chunk)."""
        return write_record_chunks(ActivationTable, chunks, self.activation_path(model, layer),
                                   provenance=provenance)

    def activation_provenance(self, model: str, layer: str) -> dict[str, Any] | None:
        """One layer file's provenance; None without a (readable: pyarrow, JSON) file."""
        try:
            return provenance_of(self.activation_path(model, layer))
        except (OSError, ValueError):
            return None

    def activation_files(self, model: str | None = None) -> list[Path]:
        """Activation files of one model (or all), sorted."""
        base = self.root / "activations"
        if model is not None:
            base = base / f"model={_safe(model)}"
        return sorted(p for p in base.rglob("data.parquet")) if base.is_dir() else []

    def scan_activations(self, model: str | None = None) -> pl.LazyFrame:
        """All ActivationTable rows of the run (or one model), lazily."""
        return scan_records(ActivationTable, self.activation_files(model))

    def activation_layers(self, model: str | None = None) -> list[tuple[str, str]]:
        """``(model, layer)`` of every activation file (or of one model), in file order."""
        return [(m, layer) for m, layer, _ in self.activation_units(model)]

    def activation_units(self, model: str | None = None) -> list[tuple[str, str, list[int]]]:
        """``(model, layer, units)`` of every activation file (or of one model), in file order
        (no values read)."""
        out = []
        for f in self.activation_files(model):
            df = scan_records(ActivationTable, f).select(NEURON_KEY).collect()
            out.append((str(df["model"][0]), str(df["layer"][0]), df["unit"].to_list()))
        return out

    def activations(self, model: str, layer: str) -> pl.DataFrame:
        """The validated ActivationTable rows of one layer."""
        return read_records(ActivationTable, self.activation_path(model, layer))

    def activation_matrix(self, model: str, layer: str) -> LayerActivations:
        """The activation matrix of one layer (units ascending)."""
        df = (scan_records(ActivationTable, self.activation_path(model, layer))
              .select("unit", "values").sort("unit").collect())
        values = np.array(df["values"].to_numpy(), dtype=np.float32)  # [n, N], writable copy
        return LayerActivations(model, layer, df["unit"].to_numpy().astype(np.int64), values.T)

    def neuron_index(self, model: str | None = None) -> pl.DataFrame:
        """``model, layer, unit, block, alias`` of every recorded neuron (or one model's).

        Raises:
            DataError: the run holds no activations (of that model).
        """
        files = self.activation_files(model)
        if not files:
            which = "" if model is None else f" of model {model!r}"
            raise DataError(f"{self.root}/activations: no ActivationTable{which} "
                            "(run the record stage)")
        lf = scan_records(ActivationTable, files).select(*NEURON_KEY, "block", "alias")
        return lf.collect().sort(NEURON_KEY)

    def recorded_layers(self, model: str) -> list[str]:
        """Recorded layers of a model in module order, classifier last (the record stage's
        manifest entry ``stages.record.<model>.layers``).

        Raises:
            DataError: the record stage has not recorded this model.
        """
        entry = ((self.manifest().get("stages") or {}).get("record") or {}).get(model)
        layers = entry.get("layers") if isinstance(entry, dict) else None
        if not isinstance(layers, list) or not layers:
            raise DataError(f"{self.manifest_path}: stages.record.{model}.layers is missing "
                            "(run the record stage)")
        return [str(x) for x in layers]

    # ----- the neuron view, results -----------------------------------------------------------
    def neurons(self) -> pl.LazyFrame:
        """One lazy row per recorded neuron joining every neuron-level record the run holds
        (see :func:`and_toolkit.neuron_view.neuron_view`).

        Raises:
            FileNotFoundError: the run holds no neuron-level records at all.
        """
        def scan(record: type[Record]) -> pl.LazyFrame | None:
            return scan_records(record, self.path(record)) if self.has(record) else None

        view = neuron_view(
            activations=self.scan_activations() if self.activation_files() else None,
            extremes=scan(Extremes), summaries=scan(Summary),
            calibrated=scan(CalibratedSummary), concepts=scan(ConceptSet),
            scores=scan(ExplanationScore))
        if view is None:
            raise FileNotFoundError(f"{self.root}: the run holds no neuron records yet")
        return view

    def write_result(self, experiment: str, df: pl.DataFrame, **provenance: Any) -> Path:
        """Write one experiment's result rows."""
        return write_records(ResultRow, df, self.result_path(experiment), provenance=provenance)

    def result_provenance(self, experiment: str) -> dict[str, Any]:
        """The provenance stored with one experiment's result rows."""
        return provenance_of(self.result_path(experiment))

    def results(self) -> dict[str, pl.DataFrame]:
        """All experiment results of the run, by experiment id."""
        base = self.root / "results"
        if not base.is_dir():
            return {}
        return {p.stem: read_records(ResultRow, p) for p in sorted(base.glob("*.parquet"))}

    def remove_result(self, experiment: str) -> None:
        """Delete one experiment's result file, if any."""
        self.result_path(experiment).unlink(missing_ok=True)

    # ----- human ratings ----------------------------------------------------------------------
    @property
    def ratings_path(self) -> Path:
        """The Rating file (human ratings appended by the explorer, read by Table 3)."""
        return self.path(Rating)

    def ratings(self) -> pl.DataFrame:
        """The run's validated Rating rows (an empty frame when nobody has rated yet)."""
        return self.read(Rating) if self.has(Rating) else Rating.empty()

    # ----- other files ------------------------------------------------------------------------
    def write_text(self, path: Path, text: str) -> Path:
        """Write a text file of the run (one of the paths above) atomically, UTF-8."""
        if self.root not in path.parents:
            raise ValueError(f"{path} is not inside the run {self.root}")
        atomic_write_bytes(path, lambda tmp: tmp.write_text(text, "utf-8"))
        return path

    # ----- manifest ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest, or an empty dict for a new run."""
        if not self.manifest_path.is_file():
            return {}
        return dict(json.loads(self.manifest_path.read_text("utf-8")))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write the manifest atomically (sorted keys, stable bytes)."""
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
        atomic_write_bytes(self.manifest_path, lambda tmp: tmp.write_text(text, "utf-8"))

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge top-level fields into the manifest and write it."""
        manifest = self.manifest()
        manifest.update(fields)
        self.write_manifest(manifest)
        return manifest

    def mark_stage(self, stage: str, **info: Any) -> None:
        """Record that a stage completed, with its details (counts, timings, backends)."""
        manifest = self.manifest()
        manifest.setdefault("stages", {})[stage] = info
        self.write_manifest(manifest)

    def stage_info(self, stage: str) -> dict[str, Any]:
        """The manifest's details of a completed stage (empty when it has not run)."""
        info = (self.manifest().get("stages") or {}).get(stage)
        return dict(info) if isinstance(info, dict) else {}

    def stage_done(self, stage: str) -> bool:
        """Whether the manifest records the stage as completed."""
        return stage in self.manifest().get("stages", {})
