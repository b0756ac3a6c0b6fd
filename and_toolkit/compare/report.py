"""The typed result of a diff: :class:`DiffReport` (frozen pydantic) with Polars frames.

Neuron-level changes are one long frame, ``DiffReport.changes`` (one row per change, schema
:data:`CHANGES_SCHEMA`); ``DiffReport.neurons`` groups it to one row per changed neuron;
``DiffReport.counts`` counts changes per model / layer / kind. Experiment-result changes are
``DiffReport.results`` (schema :data:`RESULTS_SCHEMA`).
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from and_toolkit.compare.tolerance import Tolerance

CHANGE_KINDS: dict[str, str] = {
    "neuron_added": "the neuron is only in B",
    "neuron_removed": "the neuron is only in A",
    "top_clips": "top-K clip set (Extremes high) changed: Jaccard below the threshold",
    "bottom_clips": "bottom-K clip set (Extremes low) changed",
    "summary_high": "points of the top-K summary (S_h) removed / added",
    "summary_low": "points of the bottom-K summary (S_l) removed / added",
    "calibrated": "kept points of the calibrated summary (S_h^c) removed / added",
    "open_concepts": "open concepts (OCP, kept) removed / added",
    "closed_top1": "a method x similarity's top-1 closed concept changed (not a near-tie)",
    "closed_rank": "closed concepts moved within the compared top ranks (not near-ties)",
    "closed_score": "a closed concept at the same rank in both runs: score moved beyond tolerance",
}
"""Every change kind of ``DiffReport.changes.kind``, in report order, with its meaning."""

CHANGES_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(), "layer": pl.String(), "unit": pl.Int32(), "kind": pl.String(),
    "detail": pl.String(), "before": pl.String(), "after": pl.String(), "delta": pl.Float64(),
}
"""One neuron-level change: ``kind`` (a key of :data:`CHANGE_KINDS`), ``detail`` (method /
similarity, side, Jaccard), ``before`` (run A) and ``after`` (run B) as display text,
``delta`` a number where one applies (score B - A; 1 - Jaccard), else null."""

RESULTS_SCHEMA: dict[str, pl.DataType] = {
    "experiment": pl.String(), "key": pl.String(), "model": pl.String(),
    "metric": pl.String(), "change": pl.String(), "before": pl.Float64(),
    "after": pl.Float64(), "delta": pl.Float64(),
}
"""One experiment-result change: ``change`` is 'value', 'added' or 'removed'."""


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame of a schema."""
    return pl.DataFrame(schema=schema)


class ProbeDiff(BaseModel):
    """Whether the two runs probed the same clips in the same order (ProbeClip)."""

    model_config = ConfigDict(frozen=True)

    compared: bool
    """Both runs hold a probe file and the probe was compared."""
    not_compared: str = ""
    """Why not, when ``compared`` is False."""
    same: bool
    """Same (dataset, clip_id) sequence: activations / extremes are comparable."""
    clips_a: int
    clips_b: int
    only_a: int
    only_b: int
    reordered: bool
    """Same clips, other order."""
    examples_only_a: tuple[str, ...] = ()
    examples_only_b: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """One line about the probes."""
        if not self.compared:
            return f"probe: not compared ({self.not_compared or 'a run holds no probe.parquet'})"
        if self.same:
            return f"probe: the same {self.clips_a} clips in the same order"
        what = ("the same clips in another order" if self.reordered else
                f"{self.only_a} clips only in A, {self.only_b} only in B")
        return (f"probe: DIFFERENT ({self.clips_a} vs {self.clips_b} clips, {what}): "
                "activations and extremes are not comparable and were not compared")


class DiffReport(BaseModel):
    """What changed from run A to run B beyond a tolerance. Empty frames = no change."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    a: str
    b: str
    tolerance: Tolerance
    probe: ProbeDiff
    neurons_a: int | None
    """Neurons run A holds; None when not compared (``only`` without a neuron-level part)."""
    neurons_b: int | None
    only: tuple[str, ...] | None = None
    """The parts compared (``--only``), sorted; None: every part."""
    models_added: tuple[str, ...] = ()
    models_removed: tuple[str, ...] = ()
    layers_added: tuple[tuple[str, str], ...] = ()
    layers_removed: tuple[tuple[str, str], ...] = ()
    records_only_a: tuple[str, ...] = ()
    """Record kinds only run A holds (not compared)."""
    records_only_b: tuple[str, ...] = ()
    excused: dict[str, int] = {}
    """Near-ties not counted as changes, per kind (e.g. swapped concepts within tolerance)."""
    notes: tuple[str, ...] = ()
    changes: pl.DataFrame
    """Neuron-level changes, one row each (:data:`CHANGES_SCHEMA`), sorted by neuron, kind."""
    results: pl.DataFrame
    """Experiment-result changes (:data:`RESULTS_SCHEMA`), sorted by experiment, key."""

    # ----- derived views ----------------------------------------------------------------------
    @property
    def changed(self) -> bool:
        """Whether anything differs beyond tolerance (the CLI's exit status 1)."""
        return bool(self.changes.height or self.results.height or self.records_only_a
                    or self.records_only_b or (self.probe.compared and not self.probe.same))

    @property
    def exit_code(self) -> int:
        """0 = within tolerance, 1 = changed."""
        return 1 if self.changed else 0

    @property
    def neurons(self) -> pl.DataFrame:
        """One row per changed neuron: model, layer, unit, ``changes`` (count), ``kinds``
        (list[str]) and ``what`` (list[str], one "kind detail: before -> after" per change),
        most-changed first (ties by neuron key)."""
        if self.changes.height == 0:
            return pl.DataFrame(schema={"model": pl.String(), "layer": pl.String(),
                                        "unit": pl.Int32(), "changes": pl.UInt32(),
                                        "kinds": pl.List(pl.String()),
                                        "what": pl.List(pl.String())})
        line = pl.concat_str([pl.col("kind"), pl.lit(" "), pl.col("detail"), pl.lit(": "),
                              pl.col("before"), pl.lit(" -> "), pl.col("after")])
        return (self.changes.group_by(["model", "layer", "unit"], maintain_order=True)
                .agg(pl.len().alias("changes"), pl.col("kind").unique(maintain_order=True)
                     .alias("kinds"), line.alias("what"))
                .sort(["changes", "model", "layer", "unit"], descending=[True, False, False,
                                                                         False]))

    @property
    def counts(self) -> pl.DataFrame:
        """Changes per model, layer and kind: columns model, layer, then one UInt32 column per
        change kind that occurs, then ``total``; sorted by model, layer."""
        if self.changes.height == 0:
            return pl.DataFrame(schema={"model": pl.String(), "layer": pl.String(),
                                        "total": pl.UInt32()})
        kinds = [k for k in CHANGE_KINDS if k in set(self.changes["kind"].unique().to_list())]
        wide = (self.changes.group_by(["model", "layer", "kind"]).agg(pl.len().alias("n"))
                .pivot(on="kind", index=["model", "layer"], values="n")
                .with_columns(pl.col(k).fill_null(0) for k in kinds))
        return (wide.select("model", "layer", *kinds)
                .with_columns(total=pl.sum_horizontal(kinds).cast(pl.UInt32))
                .sort(["model", "layer"]))

    @property
    def kind_totals(self) -> dict[str, int]:
        """Number of changes of each kind that occurs, in :data:`CHANGE_KINDS` order."""
        found = dict(self.changes.group_by("kind").agg(pl.len()).iter_rows())
        return {k: int(found[k]) for k in CHANGE_KINDS if k in found}

    def summary_line(self) -> str:
        """One line: within tolerance, or how much changed."""
        if not self.changed:
            return "no changes beyond tolerance"
        parts = []
        if self.changes.height:
            parts.append(f"{self.changes.height} neuron-level change(s) in "
                         f"{self.changes.select('model', 'layer', 'unit').n_unique()} neuron(s)")
        if self.results.height:
            parts.append(f"{self.results.height} result change(s)")
        if self.probe.compared and not self.probe.same:
            parts.append("different probes")
        if self.records_only_a or self.records_only_b:
            parts.append("record kinds held by one run only")
        return "CHANGED: " + ", ".join(parts)

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """A JSON-ready dict of the whole report (``top`` limits the neuron list)."""
        neurons = self.neurons
        if top is not None:
            neurons = neurons.head(top)
        return {
            "a": self.a, "b": self.b, "changed": self.changed, "summary": self.summary_line(),
            "tolerance": self.tolerance.model_dump(),
            "probe": {**self.probe.model_dump(), "message": self.probe.message},
            "only": None if self.only is None else list(self.only),
            "neurons_a": self.neurons_a, "neurons_b": self.neurons_b,
            "models_added": list(self.models_added), "models_removed": list(self.models_removed),
            "layers_added": [list(x) for x in self.layers_added],
            "layers_removed": [list(x) for x in self.layers_removed],
            "records_only_a": list(self.records_only_a),
            "records_only_b": list(self.records_only_b),
            "excused_near_ties": dict(self.excused), "notes": list(self.notes),
            "kind_totals": self.kind_totals,
            "counts": self.counts.to_dicts(),
            "most_changed": neurons.to_dicts(),
            "changes": _json_rows(self.changes),
            "results": _json_rows(self.results),
        }


def _json_rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with non-finite floats as strings (JSON has no NaN / Infinity)."""
    def fix(v: Any) -> Any:
        return str(v) if isinstance(v, float) and not math.isfinite(v) else v
    return [{k: fix(v) for k, v in row.items()} for row in df.iter_rows(named=True)]
