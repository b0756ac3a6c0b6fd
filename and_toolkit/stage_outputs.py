"""The files each completed stage of a run holds, read from its manifest entry.

A stage the manifest marks done is done only while these files exist: the pipeline re-runs a
stage whose files are missing (and every stage after it), and ``and-toolkit validate`` reports
each missing file, and each Extremes file of a K the manifest does not list, as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from and_toolkit.records.base import Record
from and_toolkit.records.models import (
    CalibratedSummary,
    Caption,
    ConceptSet,
    ExplanationScore,
    ProbeClip,
    Summary,
    TrainingCurve,
)
from and_toolkit.run import Run
from and_toolkit.stages import STAGES

__all__ = ["manifest_problems", "missing_outputs", "stage_outputs"]

ONE_FILE: dict[str, type[Record]] = {
    "probe": ProbeClip, "targets": TrainingCurve, "captions": Caption, "open": ConceptSet,
    "closed": ConceptSet, "score": ExplanationScore}
"""Stages whose output is one record file of the run."""
PRIMARY_VARIANT = "captions"
"""The stage-info name of the primary caption variant (file variant "")."""


def stage_outputs(run: Run, stage: str, entry: Mapping[str, Any]) -> list[Path]:
    """The files a completed stage holds, from its manifest entry (``stages.<stage>``).

    probe / targets / captions / open / closed / score: their record file; record: the
    activation file of every layer of every target (``<target>.layers``); extremes: the run's
    K and every ``extra_k``; summaries / calibrate: the file of every caption variant
    (``variants``); experiments: ``results/<id>.parquet`` of every experiment written;
    report: ``report/index.html``. A skipped stage (``skipped``) holds none.

    Raises:
        ValueError: a model, layer or experiment id in the entry that is not a safe path
            component.
    """
    if entry.get("skipped") or stage not in STAGES:
        return []
    if stage == "record":
        return [run.activation_path(model, str(layer)) for model, v in sorted(entry.items())
                if not model.startswith("_") and isinstance(v, dict)
                for layer in v.get("layers") or []]
    if stage == "extremes":
        return [run.extremes_path(), *(run.extremes_path(int(k))
                                       for k in entry.get("extra_k") or [])]
    if stage in ("summaries", "calibrate"):
        record = Summary if stage == "summaries" else CalibratedSummary
        variants = entry.get("variants") or {PRIMARY_VARIANT: {}}
        return [run.path(record, "" if v == PRIMARY_VARIANT else v) for v in variants]
    if stage == "experiments":
        return [run.result_path(e) for e in entry.get("experiments") or {}]
    if stage == "report":
        return [run.report_path]
    return [run.path(ONE_FILE[stage])]


def missing_outputs(run: Run, stage: str, entry: Mapping[str, Any]) -> list[Path]:
    """The files of :func:`stage_outputs` that do not exist."""
    return [p for p in stage_outputs(run, stage, entry) if not p.is_file()]


def manifest_problems(run: Run) -> list[str]:
    """Missing files of every stage the manifest marks done, and Extremes files of a K the
    extremes stage's entry does not list (left by an earlier configuration), one message each
    naming the file and the stage."""
    try:
        stages = run.manifest().get("stages") or {}
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8
        return [f"{run.manifest_path}: not a readable JSON manifest ({exc})"]
    problems = []
    for stage, entry in stages.items():
        if not isinstance(entry, dict):
            continue
        try:
            missing = missing_outputs(run, stage, entry)
        except ValueError as exc:
            problems.append(f"{run.manifest_path}: stages.{stage}: {exc}")
            continue
        problems += [f"{p}: missing; the manifest marks stage '{stage}' done and it writes "
                     "this file (re-run the stage)" for p in missing]
    extremes = stages.get("extremes")
    if isinstance(extremes, dict):
        listed = {int(k) for k in extremes.get("extra_k") or []}
        problems += [f"{run.extremes_path(k)}: Extremes of K = {k}, which stages.extremes."
                     f"extra_k {sorted(listed)} in {run.manifest_path} does not list (left by "
                     "an earlier configuration)" for k in run.extremes_ks() if k not in listed]
    return problems
