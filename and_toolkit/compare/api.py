"""``and_toolkit.diff(a, b)``: compare two runs (or baselines) record by record."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from and_toolkit.compare.compare import diff_snapshots
from and_toolkit.compare.report import DiffReport
from and_toolkit.compare.snapshot import Snapshot
from and_toolkit.compare.tolerance import Tolerance, load_tolerance
from and_toolkit.run import Run

Source = str | Path | Run | Snapshot
"""A run directory, a :class:`Run`, or an already loaded :class:`Snapshot`."""


def snapshot_of(source: Source) -> Snapshot:
    """The snapshot of a run path / handle (a snapshot is returned as is)."""
    return source if isinstance(source, Snapshot) else Snapshot.from_run(source)


def diff(a: Source, b: Source, tolerance: str | Path | Tolerance | None = None,
         only: Iterable[str] | None = None) -> DiffReport:
    """What changed from run ``a`` to run ``b`` beyond ``tolerance``.

    Compares probe identity (ProbeClip), the models / layers / units present, top- and
    bottom-K clip sets (Extremes), summary points (Summary), calibrated points
    (CalibratedSummary), open concepts (ConceptSet OCP kept), closed concepts per method x
    similarity (top-1, ranks within the top ``rank_window``, scores) and experiment results
    (ResultRow values). See :class:`~and_toolkit.compare.report.DiffReport`.

    Args:
        a, b: runs (directory, :class:`Run`) or snapshots; ``a`` is "before".
        tolerance: a :class:`Tolerance`, a preset name ('strict', 'default', 'meaning'), a
            TOML / JSON file, or None (default).
        only: compare just these parts (names of
            :data:`~and_toolkit.compare.snapshot.PARTS`, e.g. ``["results"]``); None: all.

    Returns:
        The report; ``report.changed`` / ``report.exit_code`` say whether anything changed.

    Raises:
        DataError: a run directory is missing or not a run.
        RecordValidationError: a record file of another schema version or kind, or corrupt.
        ConfigError: a bad tolerance.
    """
    tol = load_tolerance(tolerance)
    sa, sb = snapshot_of(a), snapshot_of(b)
    if only is not None:
        parts = list(only)
        sa, sb = sa.restricted(parts), sb.restricted(parts)
    return diff_snapshots(sa, sb, tol)
