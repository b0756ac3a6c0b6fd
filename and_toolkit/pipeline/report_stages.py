"""Experiments and report stages."""

from __future__ import annotations

from typing import Any

from and_toolkit.pipeline.context import Context


def stage_experiments(ctx: Context) -> dict[str, Any]:
    raise NotImplementedError


def stage_report(ctx: Context) -> dict[str, Any]:
    raise NotImplementedError
