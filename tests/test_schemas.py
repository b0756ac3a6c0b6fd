"""Committed JSON Schemas match the record models."""

from __future__ import annotations

import json
from pathlib import Path

from and_toolkit.records import ALL_RECORDS
from and_toolkit.schemas import stale_schemas, write_schemas

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_committed_schemas_are_current() -> None:
    stale = stale_schemas(SCHEMAS)
    assert not stale, f"run `and-toolkit schemas` to regenerate: {stale}"


def test_schemas_document_every_field(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    for record in ALL_RECORDS:
        schema = json.loads((tmp_path / f"{record.record_name}.json").read_text())
        assert schema["x-primary-key"] == list(record.primary_key)
        assert schema["additionalProperties"] is False
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"{record.record_name}.{name} lacks a description"
