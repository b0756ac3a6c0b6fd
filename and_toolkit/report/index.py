"""``reports/index.html``: one row per published report, from the ``summary.json`` beside it.

Imports no torch or transformers (``and-toolkit index`` runs in well under a second).
"""

from __future__ import annotations

import json
from pathlib import Path

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.errors import DataError
from and_toolkit.report.context import IndexEntry
from and_toolkit.report.render import render_index

__all__ = ["SUMMARY_FILE", "write_reports_index"]

SUMMARY_FILE = "summary.json"
"""Beside each published report: its run name, models with accuracy and summary line (the index
reads these)."""


def _index_entry(page: Path) -> IndexEntry:
    """The index row of one published report, from the ``summary.json`` beside it."""
    name, path = page.parent.name, f"{page.parent.name}/index.html"
    meta = page.parent / SUMMARY_FILE
    if not meta.is_file():
        return IndexEntry(name=name, path=path, summary=f"no {SUMMARY_FILE} beside this report: "
                          "publish it again with this version (and-toolkit run CONFIG --publish DIR)")
    try:
        data = json.loads(meta.read_text("utf-8"))
        return IndexEntry(name=name, path=path, summary=str(data["summary"]),
                          models=tuple(str(m) for m in data["models"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta}: not a report summary (expected JSON with 'summary' and "
                        f"'models'): {exc}") from None


def write_reports_index(reports: Path) -> Path:
    """Write ``reports/index.html``: one row per ``reports/<run>/index.html`` with its models,
    their accuracy and the verdict summary (from ``summary.json`` beside each report).

    Raises:
        DataError: ``reports`` is not an existing directory (it is never created here).
    """
    if not reports.is_dir():
        raise DataError(f"{reports}: no such reports directory" if not reports.exists()
                        else f"{reports}: not a directory")
    entries = [_index_entry(page) for page in sorted(reports.glob("*/index.html"))]
    out = reports / "index.html"
    html = render_index(entries)
    atomic_write_bytes(out, lambda tmp: tmp.write_text(html, "utf-8"))
    return out
