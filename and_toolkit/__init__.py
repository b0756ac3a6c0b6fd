"""and-toolkit: Audio Network Dissection (AND) as typed, persisted, testable transforms."""

from pathlib import Path

import polars as pl

from and_toolkit.run import Run
from and_toolkit.store import read_records, scan_records, write_records

__version__ = "0.1.0"
__all__ = ["Run", "__version__", "neurons", "read_records", "scan_records", "write_records"]


def neurons(run: str | Path | Run) -> pl.LazyFrame:
    """One lazy row per recorded neuron of a run (see :meth:`Run.neurons`).

    Raises:
        RecordValidationError: a record file of the run is of the wrong kind or version.
        FileNotFoundError: the run holds no neuron-level records at all.
    """
    return (run if isinstance(run, Run) else Run.at(run)).neurons()
