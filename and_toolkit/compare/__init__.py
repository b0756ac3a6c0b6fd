"""Diff two dissection runs record by record, within float tolerances; regression baselines.

``and_toolkit.diff(a, b, tolerance=...)`` returns a :class:`DiffReport`;
``and-toolkit diff RUN_A RUN_B`` prints it (exit 0 = within tolerance, 1 = changed, 2 = bad
input); the pytest fixture ``dissection_regression`` (:mod:`and_toolkit.compare.pytest_plugin`)
compares a run with a baseline beside the test through the same code.

Modules, one idea each: ``tolerance`` (Tolerance, presets, derivation), ``snapshot`` (what is
compared, loaded from a run), ``baseline`` (a snapshot as YAML + NPZ), ``ties`` (near-tie
rules), ``closed`` / ``compare`` (the comparisons), ``report`` (DiffReport), ``render`` (text,
Markdown, JSON, HTML), ``api`` (``diff``), ``pytest_plugin``.

This ``__init__`` imports nothing heavy (the pytest plugin is a submodule): names are loaded on
first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from and_toolkit.compare.api import diff
    from and_toolkit.compare.report import DiffReport, ProbeDiff
    from and_toolkit.compare.snapshot import Snapshot
    from and_toolkit.compare.tolerance import PRESETS, Tolerance, load_tolerance

_EXPORTS = {
    "diff": "and_toolkit.compare.api", "DiffReport": "and_toolkit.compare.report",
    "ProbeDiff": "and_toolkit.compare.report", "Snapshot": "and_toolkit.compare.snapshot",
    "Tolerance": "and_toolkit.compare.tolerance", "PRESETS": "and_toolkit.compare.tolerance",
    "load_tolerance": "and_toolkit.compare.tolerance",
}
__all__ = ["PRESETS", "DiffReport", "ProbeDiff", "Snapshot", "Tolerance", "diff",
           "load_tolerance"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
