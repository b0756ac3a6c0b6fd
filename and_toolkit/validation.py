"""Whole-file and whole-run checks behind ``and-toolkit validate`` and ``and-toolkit info``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from and_toolkit.errors import RecordValidationError
from and_toolkit.records.models import ActivationTable, Caption, Extremes, ProbeClip
from and_toolkit.run import FILES, Run
from and_toolkit.stage_outputs import manifest_problems
from and_toolkit.stages import STAGES
from and_toolkit.store import read_records, record_of, vector_width


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
            width = vector_width(ActivationTable, f, "values")
        except RecordValidationError:  # unreadable: reported by the file check
            continue
        if width is not None and width != n:
            problems.append(f"{f}: record ActivationTable, field 'values': width {width} "
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
    """Validate one record file, or every record file of a run directory plus cross-checks and
    the manifest's stages (a file of a stage marked done that is missing, an Extremes file of a
    K the manifest does not list: :func:`~and_toolkit.stage_outputs.manifest_problems`).

    Returns:
        Every problem found, each naming file, record and field (or file and stage; empty
        list = valid).
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
    problems += manifest_problems(Run.at(path))
    return problems


def run_info(path: Path) -> dict[str, Any]:
    """What a run holds: row counts per record kind, neurons per model/layer, stages, provenance.

    Raises:
        DataError: ``path`` is not a run (missing, not a directory, no readable manifest.json).
    """
    run = Run.existing(path)
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
                "rows": run.rows(record), "provenance": run.provenance(record)}
    layers = {f"{model}/{layer}": len(units) for model, layer, units in run.activation_units()}
    if layers:
        info["records"][ActivationTable.record_name] = {
            "layers": len(layers), "neurons": sum(layers.values()), "per_layer": layers}
    targets = run.stage_info("targets")
    info["targets"] = {
        tid: {k: t.get(k) for k in ("arch", "precision", "threads", "trained_with",
                                   "test_accuracy",
                                   "weights_key", "train_seconds", "estimated_train_s",
                                   "resources", "family",
                                   "pretrained", "factory", "sample_rate", "early_stopping")}
        for tid, t in sorted(targets.items()) if isinstance(t, dict) and (
            "arch" in t or "family" in t)}
    stages = manifest.get("stages") or {}
    info["warnings"] = [f"{stage}: {entry['warning']}" for stage, entry in stages.items()
                        if isinstance(entry, dict) and entry.get("warning")]
    info["skipped"] = {**{stage: entry["skipped"] for stage, entry in stages.items()
                          if isinstance(entry, dict) and entry.get("skipped")},
                       **dict(manifest.get("skipped") or {})}
    order = {name: i for i, name in enumerate(STAGES)}
    info["timings"] = {
        stage: {"wall_s": entry.get("seconds"), **(entry.get("resources") or {})}
        for stage, entry in sorted(stages.items(), key=lambda kv: order.get(kv[0], len(order)))
        if isinstance(entry, dict)}
    closed = run.stage_info("closed")
    info["closed_methods"] = {
        "seconds": closed.get("method_seconds") or {},
        "llm_load_s": (closed.get("icl_requests") or {}).get("llm_load_s")}
    recorded = run.stage_info("record")
    pruning = run.stage_info("experiments").get("pruning") or {}
    info["per_target"] = {
        tid: {"record": (recorded.get(tid) or {}).get("resources"),
              "record_reused": (recorded.get(tid) or {}).get("reused"),
              "record_from_cache": (recorded.get(tid) or {}).get("from_cache"),
              "pruning": pruning.get(tid)}
        for tid in sorted({*(k for k, v in recorded.items() if isinstance(v, dict)
                             and "layers" in v), *pruning})}
    info["results"] = sorted(run.results())
    info["report"] = str(run.report_path) if run.report_path.is_file() else None
    return info


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return [line.format(*header), line.format(*["-" * w for w in widths]),
            *(line.format(*r) for r in rows)]


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _epochs(stop: dict[str, Any] | None) -> str:
    """``kept/run of max`` of a target trained with early stopping, else ``-``."""
    if not stop:
        return "-"
    return f"{stop['kept_epoch']}/{stop['epochs_run']} of {stop['max_epochs']}"


def _model_and_precision(target: dict[str, Any]) -> tuple[str, str]:
    """The ``model`` and ``precision`` cells of a target: ``arch`` and its training precision
    (``?`` when not recorded) for a target trained here; ``user <family>`` and ``as loaded``
    for a user's model (no arch: nothing is built or trained here)."""
    if target.get("arch"):
        return str(target["arch"]), str(target.get("precision") or "?")
    return f"user {target.get('family') or '?'}", "as loaded"


def info_text(info: dict[str, Any]) -> str:
    """``and-toolkit info`` as text: the run, its targets and each stage's resources as tables
    (``--json`` prints :func:`run_info` itself)."""
    out = [f"run {info['run']} ({info.get('name') or 'no name'})", ""]
    out += [f"WARNING {w}" for w in info.get("warnings", [])]
    out += [f"skipped {stage}: {why}" for stage, why in (info.get("skipped") or {}).items()]
    if info.get("warnings") or info.get("skipped"):
        out.append("")
    if info["targets"]:
        rows = [[tid, *_model_and_precision(t),
                 str(t.get("threads") or ("?" if t.get("arch") else "-")),
                 _num(t.get("test_accuracy"), ".3f"),
                 _epochs(t.get("early_stopping")), _num(t.get("train_seconds"), ".1f"),
                 _num((t.get("resources") or {}).get("wall_s"), ".1f"),
                 _num((t.get("resources") or {}).get("peak_rss_mib"), ".0f")]
                for tid, t in info["targets"].items()]
        out += _table(["target", "model", "precision", "threads", "accuracy", "epochs",
                       "train s", "this run s", "peak MiB"], rows)
        out += ["(model: the arch trained here, or 'user <family>' for a user's model, run as "
                "loaded, in its own precision; "
                "threads, train s: of the training that produced the weights, ? when they were "
                "cached before it was recorded; epochs: with early stopping, the epoch kept / "
                "epochs run of the maximum; this run s: this run's "
                "targets stage for the target, a cache read when the weights were cached)", ""]
    if info["timings"]:
        rows = [[stage, _num(t.get("wall_s"), ".1f"), _num(t.get("cpu_s"), ".1f"),
                 _num(t.get("peak_rss_mib"), ".0f")] for stage, t in info["timings"].items()]
        total = [sum(t.get(k) or 0.0 for t in info["timings"].values())
                 for k in ("wall_s", "cpu_s")]
        rows.append(["total", f"{total[0]:.1f}", f"{total[1]:.1f}" if total[1] else "-", ""])
        out += _table(["stage", "wall s", "cpu s", "peak MiB"], rows)
        methods = (info.get("closed_methods") or {}).get("seconds") or {}
        if methods:
            load = info["closed_methods"].get("llm_load_s")
            out.append("(closed: " + ", ".join(
                f"{m} {s:.1f} s" + (f" incl. loading the LLM {load:.1f} s"
                                    if m == "ICL" and load is not None else "")
                for m, s in methods.items()) + ")")
        out.append("")
    if info.get("per_target"):
        rows = [[tid, "reused" if t["record_reused"] else _num((t["record"] or {}).get(
                    "wall_s"), ".1f") + (" (cache)" if t.get("record_from_cache") else ""),
                 _num((t["record"] or {}).get("cpu_s"), ".1f"),
                 _num((t["pruning"] or {}).get("forward_passes"), "d"),
                 _num((t["pruning"] or {}).get("wall_s"), ".1f"),
                 _num((t["pruning"] or {}).get("cpu_s"), ".1f"),
                 _num((t["pruning"] or {}).get("cached"), "d")]
                for tid, t in info["per_target"].items()]
        out += _table(["target", "record s", "record cpu s", "pruned passes", "pruning s",
                       "pruning cpu s", "cached passes"], rows)
        out += ["(record: this run's recording of the target, 'reused' when its files were "
                "kept, '(cache)' when copied from the cache; pruning: the experiments stage's "
                "pruned forward passes run here; cached passes were read from the cache, --json "
                "gives what they cost when they ran)", ""]
    records = info["records"]
    if records:
        rows = [[name, str(r.get("rows", r.get("neurons", "")))] for name, r in records.items()]
        out += _table(["record", "rows"], rows) + [""]
    out.append(f"results: {len(info['results'])}" + (f" ({', '.join(info['results'])})"
                                                       if info["results"] else ""))
    out.append(f"report: {info['report'] or 'none'}")
    return "\n".join(out) + "\n"
