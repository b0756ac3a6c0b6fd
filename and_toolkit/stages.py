"""The pipeline's stage names, in run order.

A module of its own, with no heavy imports, so that read-only commands (``and-toolkit info``,
``validate``) need not import the config and, through it, torch and transformers.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["STAGES", "Stage"]

Stage = Literal[
    "probe", "targets", "record", "extremes", "captions", "summaries", "calibrate",
    "open", "closed", "score", "experiments", "report",
]
"""One stage's name."""
STAGES: tuple[str, ...] = get_args(Stage)
"""Every stage, in the order a run executes them."""
