"""A run directory: where one configuration's records, manifest and report live.

Layout (see docs/architecture.md)::

    <run>/manifest.json
    <run>/probe.parquet, captions.parquet, extremes.parquet, summaries.parquet,
          calibrated.parquet, concepts.parquet, training.parquet
    <run>/activations/model=<m>/layer=<l>/data.parquet
    <run>/results/<experiment>.parquet
    <run>/report/index.html
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.records.base import Record
from and_toolkit.records.models import (
    ActivationTable,
    CalibratedSummary,
    Caption,
    ConceptSet,
    Extremes,
    ProbeClip,
    ResultRow,
    Summary,
    TrainingCurve,
)
from and_toolkit.store import read_records, scan_records, write_records

FILES: dict[type[Record], str] = {
    ProbeClip: "probe.parquet",
    Caption: "captions.parquet",
    Extremes: "extremes.parquet",
    Summary: "summaries.parquet",
    CalibratedSummary: "calibrated.parquet",
    ConceptSet: "concepts.parquet",
    TrainingCurve: "training.parquet",
}
"""Record kinds stored as one file per run."""

TRACKED_PACKAGES = (
    "and-toolkit", "torch", "numpy", "polars", "pydantic", "transformers",
    "sentence-transformers", "spacy", "scikit-learn", "scipy", "matplotlib", "jinja2",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that determine results (missing ones omitted)."""
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _safe(part: str) -> str:
    """A path component for a model or layer id (no separators)."""
    if not part or "/" in part or part.startswith("."):
        raise ValueError(f"invalid model/layer id for a path: {part!r}")
    return part


@dataclass(frozen=True)
class Run:
    """Handle on a run directory. Creating the handle does not touch the disk."""

    root: Path

    @classmethod
    def at(cls, path: str | Path) -> Run:
        """A run rooted at ``path``."""
        return cls(Path(path))

    # ----- paths ------------------------------------------------------------------------------
    def path(self, record: type[Record]) -> Path:
        """The file of a one-file-per-run record kind."""
        return self.root / FILES[record]

    def activation_path(self, model: str, layer: str) -> Path:
        """The ActivationTable file of one layer."""
        return self.root / "activations" / f"model={_safe(model)}" / f"layer={_safe(layer)}" / (
            "data.parquet")

    def result_path(self, experiment: str) -> Path:
        """The ResultRow file of one experiment."""
        return self.root / "results" / f"{_safe(experiment)}.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def report_path(self) -> Path:
        return self.root / "report" / "index.html"

    # ----- records ----------------------------------------------------------------------------
    def has(self, record: type[Record]) -> bool:
        """Whether the run holds a file of this record kind."""
        return self.path(record).is_file()

    def write(self, record: type[Record], df: pl.DataFrame, **provenance: Any) -> Path:
        """Write a one-file-per-run record kind (validated, atomic)."""
        return write_records(record, df, self.path(record), provenance=provenance)

    def read(self, record: type[Record]) -> pl.DataFrame:
        """Read and validate a one-file-per-run record kind."""
        return read_records(record, self.path(record))

    def write_activations(self, df: pl.DataFrame, **provenance: Any) -> Path:
        """Write the ActivationTable rows of exactly one (model, layer)."""
        pairs = df.select("model", "layer").unique()
        if pairs.height != 1:
            raise ValueError(f"write_activations takes one (model, layer); got {pairs.height}")
        model, layer = pairs.row(0)
        return write_records(
            ActivationTable, df, self.activation_path(model, layer), provenance=provenance
        )

    def activation_files(self, model: str | None = None) -> list[Path]:
        """Activation files of one model (or all), sorted."""
        base = self.root / "activations"
        if model is not None:
            base = base / f"model={_safe(model)}"
        return sorted(p for p in base.rglob("data.parquet")) if base.is_dir() else []

    def scan_activations(self, model: str | None = None) -> pl.LazyFrame:
        """All ActivationTable rows of the run (or one model), lazily."""
        return scan_records(ActivationTable, self.activation_files(model))

    def write_result(self, experiment: str, df: pl.DataFrame, **provenance: Any) -> Path:
        """Write one experiment's result rows."""
        return write_records(ResultRow, df, self.result_path(experiment), provenance=provenance)

    def results(self) -> dict[str, pl.DataFrame]:
        """All experiment results of the run, by experiment id."""
        base = self.root / "results"
        if not base.is_dir():
            return {}
        return {p.stem: read_records(ResultRow, p) for p in sorted(base.glob("*.parquet"))}

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

    def stage_done(self, stage: str) -> bool:
        """Whether the manifest records the stage as completed."""
        return stage in self.manifest().get("stages", {})
