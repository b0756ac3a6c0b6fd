"""Dissection stages: summaries, Module B calibration, Module C open and Module A closed concepts."""

from __future__ import annotations

from typing import Any

from and_toolkit.pipeline.context import Context


def stage_summaries(ctx: Context) -> dict[str, Any]:
    raise NotImplementedError


def stage_calibrate(ctx: Context) -> dict[str, Any]:
    raise NotImplementedError


def stage_open(ctx: Context) -> dict[str, Any]:
    raise NotImplementedError


def stage_closed(ctx: Context) -> dict[str, Any]:
    raise NotImplementedError
