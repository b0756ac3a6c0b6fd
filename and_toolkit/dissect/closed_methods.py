"""Module A's method names (no torch: the explorer and the experiments name them without
running Module A, :mod:`~and_toolkit.dissect.closed`)."""

from __future__ import annotations

from typing import Literal

__all__ = ["CLOSED_METHODS", "ClosedMethod"]

ClosedMethod = Literal["DB", "TAB", "ICL"]
CLOSED_METHODS: tuple[ClosedMethod, ...] = ("DB", "TAB", "ICL")
"""Module A's three methods, in the paper's order (description-based, audio-text, in-context)."""
