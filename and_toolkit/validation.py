"""Whole-file and whole-run checks behind ``and-toolkit validate`` and ``and-toolkit info``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from and_toolkit.errors import RecordValidationError
from and_toolkit.records.models import ActivationTable, Caption, Extremes, ProbeClip
from and_toolkit.run import FILES, Run
from and_toolkit.store import provenance_of, read_records, record_of


def _check_file(path: Path) -> tuple[list[str], pl.DataFrame | None]:
    try:
        record = record_of(path)
        return [], read_records(record, path)
    except RecordValidationError as exc:
        return [str(exc)], None


def cross_check(run: Run) -> list[str]:
    """Consistency between a run's tables: clip sets, vector widths, extremes' clips.

    Returns:
        Human-readable problems (empty when consistent). Files that fail their own validation
        are reported by :func:`validate_path`, not here.
    """
    problems: list[str] = []
    if not run.has(ProbeClip):
        return problems
    try:
        probe = run.read(ProbeClip)
    except RecordValidationError:
        return problems
    clips = set(probe["clip_id"].to_list())
    n = probe.height
    if run.has(Caption):
        try:
            caps = run.read(Caption)
            unknown = sorted(set(caps["clip_id"].to_list()) - clips)
            if unknown:
                problems.append(f"{run.path(Caption)}: record Caption, field 'clip_id': "
                                f"{len(unknown)} caption(s) for clips not in the probe set, "
                                f"e.g. {unknown[:3]}")
        except RecordValidationError:
            pass
    for f in run.activation_files():
        try:
            width = pl.read_parquet_schema(f)["values"]
        except Exception:  # unreadable: reported by the file check
            continue
        if isinstance(width, pl.Array) and width.size != n:
            problems.append(f"{f}: record ActivationTable, field 'values': width {width.size} "
                            f"but the probe set has {n} clips")
    if run.has(Extremes):
        try:
            ex = run.read(Extremes)
            seen = set(ex["clip_ids"].explode().drop_nulls().to_list())
            unknown = sorted(seen - clips)
            if unknown:
                problems.append(f"{run.path(Extremes)}: record Extremes, field 'clip_ids': "
                                f"{len(unknown)} clip id(s) not in the probe set, "
                                f"e.g. {unknown[:3]}")
        except RecordValidationError:
            pass
    return problems


def validate_path(path: Path) -> list[str]:
    """Validate one record file, or every record file of a run directory plus cross-checks.

    Returns:
        Every problem found, each naming file, record and field (empty list = valid).
    """
    if path.is_file():
        return _check_file(path)[0]
    if not path.is_dir():
        return [f"{path}: no such file or directory"]
    problems: list[str] = []
    files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        problems.append(f"{path}: no record files found")
    for f in files:
        problems += _check_file(f)[0]
    problems += cross_check(Run.at(path))
    return problems


def run_info(path: Path) -> dict[str, Any]:
    """What a run holds: row counts per record kind, neurons per model/layer, stages, provenance."""
    run = Run.at(path)
    if not path.is_dir():
        raise RecordValidationError(str(path), "-", "*", "run directory does not exist")
    manifest = run.manifest()
    info: dict[str, Any] = {
        "run": str(path),
        "name": manifest.get("config", {}).get("name"),
        "stages": sorted(manifest.get("stages", {})),
        "records": {},
    }
    for record, _name in FILES.items():
        if run.has(record):
            info["records"][record.record_name] = {
                "rows": pl.scan_parquet(run.path(record)).select(pl.len()).collect().item(),
                "provenance": provenance_of(run.path(record)),
            }
    layers = {}
    for f in run.activation_files():
        lf = pl.scan_parquet(f).select("model", "layer", pl.len().alias("units"))
        model, layer, units = lf.group_by("model", "layer").agg(pl.col("units").first()).collect(
        ).row(0)
        layers[f"{model}/{layer}"] = units
    if layers:
        info["records"][ActivationTable.record_name] = {
            "layers": len(layers), "neurons": sum(layers.values()), "per_layer": layers}
    info["results"] = sorted(run.results())
    info["report"] = str(run.report_path) if run.report_path.is_file() else None
    return info
