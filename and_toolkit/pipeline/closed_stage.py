"""Module A stage: closed-set concepts by DB, TAB and ICL."""

from __future__ import annotations

from typing import Any

from and_toolkit.pipeline.context import Context


def stage_closed(ctx: Context) -> dict[str, Any]:
    raise NotImplementedError
