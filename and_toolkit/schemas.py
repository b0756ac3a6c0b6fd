"""JSON Schemas of every record, generated from the pydantic models (``schemas/<Record>.json``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.records.models import ALL_RECORDS


def schema_texts() -> dict[str, str]:
    """``{file name: JSON text}`` for every record (stable key order, trailing newline)."""
    return {
        f"{r.record_name}.json": json.dumps(r.json_schema(), indent=2, sort_keys=True) + "\n"
        for r in ALL_RECORDS
    }


def _writer(text: str) -> Callable[[Path], int]:
    return lambda tmp: tmp.write_text(text, "utf-8")


def write_schemas(directory: str | Path) -> list[Path]:
    """Write every record's JSON Schema into ``directory``; return the paths written."""
    directory = Path(directory)
    out = []
    for name, text in schema_texts().items():
        path = directory / name
        atomic_write_bytes(path, _writer(text))
        out.append(path)
    return out


def stale_schemas(directory: str | Path) -> list[str]:
    """Names of schema files in ``directory`` that are missing or differ from the models."""
    directory = Path(directory)
    return [
        name for name, text in schema_texts().items()
        if not (directory / name).is_file() or (directory / name).read_text("utf-8") != text
    ]
