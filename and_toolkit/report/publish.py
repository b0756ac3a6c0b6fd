"""Publishing a run's rendered report into a reports folder (``and-toolkit run --publish DIR``).

The report stage renders ``<run>/report/index.html`` and ``<run>/report/summary.json`` inside
the run only. Publishing is explicit: :func:`publish_report` copies them to
``DIR/<run name>/``, writes every result frame to ``DIR/<run name>/data/`` and rewrites
``DIR/index.html``. Nothing is written outside the run unless asked for.

Imports no torch or transformers.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.errors import DataError
from and_toolkit.records.models import ResultRow
from and_toolkit.report.index import SUMMARY_FILE, write_reports_index
from and_toolkit.run import Run
from and_toolkit.store import write_records

__all__ = ["Published", "publish_data", "publish_report", "report_summary_path"]


def report_summary_path(run: Run) -> Path:
    """``<run>/report/summary.json``: the run name, models with accuracy and the summary line,
    written by the report stage beside the page (the row of the reports index)."""
    return run.report_path.parent / SUMMARY_FILE


@dataclass(frozen=True)
class Published:
    """Where :func:`publish_report` wrote: the page, the result frames and the reports index."""

    page: Path
    data: tuple[Path, ...]
    index: Path


def publish_data(run: Run, folder: Path) -> list[Path]:
    """Write every result frame of ``run`` to ``<folder>/<result id>.parquet`` (ResultRow
    records with their provenance) and remove files of results the run no longer has.

    A reader loads any number of the report with ``and_toolkit.read_records(ResultRow, path)``;
    ``nox -s reproduce`` diffs a fresh run against these files.
    """
    written = []
    for exp, frame in sorted(run.results().items()):
        written.append(write_records(ResultRow, frame, folder / f"{exp}.parquet",
                                     provenance=run.result_provenance(exp)))
    for stale in sorted(set(folder.glob("*.parquet")) - set(written)):
        stale.unlink()
    return written


def _report_name(meta: Path) -> str:
    """The run name in ``summary.json``; it names the report's folder, so one path component."""
    try:
        name = json.loads(meta.read_text("utf-8"))["name"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta}: not a report summary (expected JSON with 'name'): "
                        f"{exc}") from None
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name
            or "\\" in name):
        raise DataError(f"{meta}: field 'name' = {name!r} cannot name a report folder "
                        "(one path component expected)")
    return name


def publish_report(run: Run, reports: str | Path) -> Published:
    """Publish the report the run's report stage rendered: ``<reports>/<name>/index.html`` (a
    copy of ``<run>/report/index.html``), ``<reports>/<name>/summary.json``,
    ``<reports>/<name>/data/`` (every result frame) and ``<reports>/index.html`` (rewritten).

    Each file is written atomically; the page is copied last among the report's files, the
    index after it.

    Raises:
        DataError: the run holds no rendered report (or no summary beside it), or ``reports``
            exists and is not a directory.
    """
    reports = Path(reports)
    page, meta = run.report_path, report_summary_path(run)
    missing = [str(p) for p in (page, meta) if not p.is_file()]
    if missing:
        raise DataError(f"{run.root}: no rendered report to publish ({', '.join(missing)} "
                        "missing): render it with and-toolkit run CONFIG --stage report")
    if reports.exists() and not reports.is_dir():
        raise DataError(f"{reports}: cannot publish there: not a directory")
    folder = reports / _report_name(meta)
    data = publish_data(run, folder / "data")
    atomic_write_bytes(folder / SUMMARY_FILE, lambda tmp: shutil.copyfile(meta, tmp))
    atomic_write_bytes(folder / "index.html", lambda tmp: shutil.copyfile(page, tmp))
    index = write_reports_index(reports)
    return Published(page=folder / "index.html", data=tuple(data), index=index)
