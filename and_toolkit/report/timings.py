"""Where a run's time went: the setup section's table of stage and training costs.

Pure functions over the manifest's ``stages`` mapping (``resources.measured`` figures written by
the pipeline). The figures are those of each stage's last execution in the run directory: a stage
whose inputs were cached (trained weights, LLM generations, pruned-model logits) shows the cost of
reading the cache, and the cost of producing the cached work when it was produced is shown on its
own row (``train_seconds`` of each target), so a warm run never passes for a cold one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from and_toolkit.report.context import StageTime

__all__ = ["stage_times"]


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _target_rows(targets: Mapping[str, Any]) -> list[StageTime]:
    rows = []
    for tid in sorted(targets):
        entry = targets[tid]
        if not isinstance(entry, dict) or "arch" not in entry:
            continue
        here = entry.get("trained_here")
        if isinstance(here, bool):
            cached = not here
        else:  # manifests written before the stage said so
            choice = entry.get("training_choice") or {}
            cached = bool(choice.get("remembered")) or (
                (_float((entry.get("resources") or {}).get("wall_s")) or 0.0)
                < 0.5 * (_float(entry.get("train_seconds")) or 0.0))
        threads = entry.get("threads")
        how = f"{entry.get('precision', '?')}, " + (
            f"{threads} thread(s); " if threads else "thread count not recorded; ")
        beside, at_once = entry.get("trained_alongside"), entry.get("training_workers")
        where = (f", in a worker process ({at_once} trainings at once, with "
                 f"{', '.join(map(str, beside))})" if isinstance(beside, list) and beside else "")
        estimate = _float(entry.get("estimated_train_s"))
        ahead = f"; estimated beforehand from its measured step: {estimate:.0f} s" \
            if estimate is not None and not cached else ""
        rows.append(StageTime(
            stage=f"targets · {tid} training", wall_s=_float(entry.get("train_seconds")),
            cpu_s=None, peak_rss_mib=None,
            note=how + ("weights read from the cache: the training that produced them"
                        if cached else "trained in this run" + where + ahead)))
    return rows


def _closed_rows(closed: Mapping[str, Any]) -> list[StageTime]:
    """One row per Module A method the closed stage ran (wall s; none for manifests written
    before the stage timed them)."""
    seconds = closed.get("method_seconds")
    if not isinstance(seconds, dict):
        return []
    rows = []
    for method in ("DB", "TAB", "ICL"):
        wall = _float(seconds.get(method))
        if wall is None:
            continue
        note = ""
        here, made = closed.get("tab_trained_here"), closed.get("tab_model")
        if method == "TAB" and isinstance(here, bool) and isinstance(made, dict):
            note = (f"includes training its audio-text model ({made.get('train_seconds')} s)"
                    if here else "its audio-text model read from the cache")
        elif method == "ICL":
            asked = closed.get("icl_requests") or {}
            note = (f"{asked.get('generated', 0)} answer(s) generated, "
                    f"{asked.get('cache_hits', 0)} read from the cache")
            if (load := _float(asked.get("llm_load_s"))) is not None:
                note += f"; loading the LLM took {load:.1f} s"
        rows.append(StageTime(stage=f"closed · {method}", wall_s=wall, cpu_s=None,
                              peak_rss_mib=None, note=note))
    return rows


def _record_rows(record: Mapping[str, Any]) -> list[StageTime]:
    rows = []
    for tid in sorted(record):
        entry = record[tid]
        if not isinstance(entry, dict) or "layers" not in entry:
            continue
        res = entry.get("resources") or {}
        reused = entry.get("reused")
        rows.append(StageTime(
            stage=f"record · {tid}", wall_s=None if reused else _float(res.get("wall_s")),
            cpu_s=None if reused else _float(res.get("cpu_s")), peak_rss_mib=None,
            note="files kept from an earlier record stage (same record key)" if reused
            else "copied from the cache (recorded earlier under the same record key)"
            if entry.get("from_cache") else ""))
    return rows


def _pruning_rows(pruning: Mapping[str, Any]) -> list[StageTime]:
    rows = []
    for tid in sorted(pruning):
        p = pruning[tid]
        if not isinstance(p, dict):
            continue
        n, cached = int(p.get("forward_passes") or 0), int(p.get("cached") or 0)
        note = f"{n} pruned fold-1 pass(es) run here"
        unknown = int(p.get("cached_without_cost") or 0)
        if cached > unknown:
            note += (f"; {cached - unknown} read from the cache, whose production took "
                     f"{_float(p.get('cached_cost_wall_s')) or 0.0:.0f} s wall / "
                     f"{_float(p.get('cached_cost_cpu_s')) or 0.0:.0f} s CPU")
        if unknown:
            note += (f"; {unknown} {'more ' if cached > unknown else ''}read from the cache, "
                     "cached before their cost was recorded")
        rows.append(StageTime(stage=f"experiments · {tid} pruning", wall_s=_float(p.get("wall_s")),
                              cpu_s=_float(p.get("cpu_s")), peak_rss_mib=None, note=note))
    return rows


def stage_times(stages: Mapping[str, Any], order: Sequence[str]) -> tuple[StageTime, ...]:
    """One row per executed stage in pipeline order, plus one per trained target.

    Args:
        stages: the manifest's ``stages`` mapping (stage -> entry with ``resources``:
            ``wall_s``, ``cpu_s`` (s), ``peak_rss_mib`` (MiB); targets also per target id).
        order: the pipeline's stage order (stages not in it are listed last, by name).

    Returns:
        The rows; the stage rows first, each target's training row right after ``targets``,
        its recording right after ``record``, each Module A method right after ``closed``
        and each target's pruned passes right after
        ``experiments`` (parts of those stages' figures), and a last ``total`` row (sums of
        wall and CPU seconds of the stage rows). Empty when no stage recorded resources.
    """
    rank = {name: i for i, name in enumerate(order)}
    rows: list[StageTime] = []
    wall = cpu = 0.0
    for stage in sorted(stages, key=lambda s: (rank.get(s, len(rank)), s)):
        entry = stages[stage]
        res = entry.get("resources") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            continue
        row = StageTime(stage=stage, wall_s=_float(res.get("wall_s")),
                        cpu_s=_float(res.get("cpu_s")),
                        peak_rss_mib=_float(res.get("peak_rss_mib")))
        wall += row.wall_s or 0.0
        cpu += row.cpu_s or 0.0
        rows.append(row)
        if stage == "targets":
            rows.extend(_target_rows(entry))
        elif stage == "record":
            rows.extend(_record_rows(entry))
        elif stage == "closed":
            rows.extend(_closed_rows(entry))
        elif stage == "experiments" and isinstance(entry.get("pruning"), dict):
            rows.extend(_pruning_rows(entry["pruning"]))
    if not rows:
        return ()
    rows.append(StageTime(stage="total", wall_s=wall, cpu_s=cpu, peak_rss_mib=None,
                          note="stages of this run directory (the per-target rows are not "
                          "added)"))
    return tuple(rows)
