"""and-toolkit: Audio Network Dissection (AND) as typed, persisted, testable transforms.

Importing the package is cheap: ``Run``, ``read_records``, ``scan_records`` and
``write_records`` are loaded on first use, so the pytest plugin shipped in
``and_toolkit.compare.pytest_plugin`` loads without polars or torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from and_toolkit.compare.report import DiffReport
    from and_toolkit.compare.snapshot import Snapshot
    from and_toolkit.compare.tolerance import Tolerance
    from and_toolkit.run import Run
    from and_toolkit.store import read_records, scan_records, write_records

__version__ = "0.1.0"
__all__ = ["Run", "__version__", "diff", "neurons", "read_records", "scan_records",
           "write_records"]

_LAZY = {"Run": "and_toolkit.run", "read_records": "and_toolkit.store",
         "scan_records": "and_toolkit.store", "write_records": "and_toolkit.store"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def neurons(run: str | Path | Run) -> pl.LazyFrame:
    """One lazy row per recorded neuron of a run (see :meth:`Run.neurons`).

    Raises:
        RecordValidationError: a record file of the run is of the wrong kind or version.
        FileNotFoundError: the run holds no neuron-level records at all.
    """
    from and_toolkit.run import Run

    return (run if isinstance(run, Run) else Run.at(run)).neurons()


def diff(a: str | Path | Run | Snapshot, b: str | Path | Run | Snapshot,
         tolerance: str | Path | Tolerance | None = None,
         only: Iterable[str] | None = None) -> DiffReport:
    """What changed from run ``a`` to run ``b`` beyond ``tolerance`` (a preset name
    'strict' / 'default' / 'meaning', a TOML / JSON file, a :class:`Tolerance`, or None),
    optionally restricted to some parts (``only=["results"]``).

    See :func:`and_toolkit.compare.api.diff` and ``docs/regression-testing.md``.

    Raises:
        DataError: a run directory is missing or not a run.
        RecordValidationError: a record file of another schema version or kind, or corrupt.
        ConfigError: a bad tolerance.
    """
    from and_toolkit.compare.api import diff as _diff

    return _diff(a, b, tolerance, only)
