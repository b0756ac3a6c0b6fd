"""Exceptions of and-toolkit. Every message names the file (or source), record and field."""

from __future__ import annotations


class AndToolkitError(Exception):
    """Base of all errors raised on bad input."""


class RecordValidationError(AndToolkitError, ValueError):
    """A frame or file does not conform to its record schema.

    Attributes:
        source: file path or a description of where the frame came from.
        record: record name (e.g. ``ActivationTable``).
        field: the offending field (column), or ``"*"`` for file-level problems.
        rows: up to a few offending rows, rendered as text (may be empty).
    """

    def __init__(self, source: str, record: str, field: str, problem: str, rows: str = "") -> None:
        self.source = source
        self.record = record
        self.field = field
        self.problem = problem
        self.rows = rows
        msg = f"{source}: record {record}, field {field!r}: {problem}"
        if rows:
            msg += f"\n  offending rows:\n{rows}"
        super().__init__(msg)


class ConfigError(AndToolkitError, ValueError):
    """A run configuration is invalid (unknown key, wrong type, missing file, ...)."""


class DataError(AndToolkitError, ValueError):
    """Input data (audio, CSV, captions) is missing or malformed."""


class StageNotRun(AndToolkitError):
    """A stage could not run because its backend is unavailable; the reason is the message."""
