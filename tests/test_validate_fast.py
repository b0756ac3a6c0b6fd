"""Record validation in one query (``records/validate.py``): same verdict and same error as the
checks run one by one.

``validate_frame`` counts every per-row problem of a frame in one Polars ``select`` and falls
back to ``validate_frame_stepwise`` (the checks one at a time, in field order) only to raise.
Each case below plants problems (nulls, NaN / inf, values outside a ``Literal`` or a bound,
empty or undecodable text, nulls inside lists, duplicated keys, a wrong dtype, a missing or
extra column) into valid sample frames of every record kind, and both functions must agree:
both pass, or both raise a ``RecordValidationError`` with the same field and message.
"""

from __future__ import annotations

import math
from typing import Any

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from samples import sample_frame

from and_toolkit.errors import RecordValidationError
from and_toolkit.records import ALL_RECORDS, Record
from and_toolkit.records import validate as V

PLANTS = ("null", "nan", "inf", "neg", "big", "empty", "fffd", "literal", "list_null",
          "dup", "dtype", "drop", "extra", "huge")


def _value(dtype: pl.DataType, plant: str) -> Any:
    """A value of ``dtype``'s kind that ``plant`` makes (None when it does not apply)."""
    if plant == "null":
        return None
    if dtype in (pl.Float32, pl.Float64):
        return {"nan": math.nan, "inf": -math.inf, "neg": -1.0, "big": 2.0, "huge": 1e30}.get(plant)
    if dtype.is_integer():
        return {"neg": -1, "big": 10**6, "huge": 2**31 - 1}.get(plant)
    if dtype == pl.String:
        return {"empty": "", "fffd": "caf\ufffd", "literal": "not-a-value"}.get(plant)
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        if plant == "list_null":
            return [None]
        if plant == "empty":
            return []
        item = _value(inner, plant)  # type: ignore[arg-type]
        return None if item is None else [item]
    return None


def _plant(df: pl.DataFrame, column: str, row: int, plant: str) -> pl.DataFrame:
    """``df`` with one change (or unchanged when the plant does not apply to ``column``)."""
    if plant == "dup":
        return pl.concat([df, df[row:row + 1]])
    if plant == "dtype":
        wrong = pl.lit(1) if df.schema[column] == pl.String else pl.lit("x")
        return df.with_columns(wrong.alias(column))
    if plant == "drop":
        return df.drop(column)
    if plant == "extra":
        return df.with_columns(pl.lit(1).alias("zz_extra"))
    dtype = df.schema[column]
    if isinstance(dtype, pl.Array):
        if plant not in ("nan", "inf", "null"):
            return df
        values = df[column].to_list()
        values[row] = None if plant == "null" else (
            [math.nan if plant == "nan" else math.inf] + list(values[row][1:]))
        return df.with_columns(pl.Series(column, values, dtype=dtype))
    value = _value(dtype, plant)
    if value is None and plant != "null":
        return df
    values = df[column].to_list()
    values[row] = value
    return df.with_columns(pl.Series(column, values, dtype=dtype, strict=False))


def _outcome(fn: Any, df: pl.DataFrame, record: type[Record], require_rows: bool
             ) -> tuple[str, str] | None:
    try:
        fn(df, "<planted>", record_name=record.record_name, specs=record.field_specs(),
           primary_key=record.primary_key, require_rows=require_rows)
    except RecordValidationError as exc:
        return exc.field, str(exc)
    return None


@st.composite
def _case(draw: st.DrawFn) -> tuple[type[Record], pl.DataFrame, bool]:
    record = draw(st.sampled_from(sorted(ALL_RECORDS, key=lambda r: r.record_name)))
    df = sample_frame(record)
    for _ in range(draw(st.integers(0, 3))):
        column = draw(st.sampled_from(df.columns))
        row = draw(st.integers(0, df.height - 1))
        df = _plant(df, column, row, draw(st.sampled_from(PLANTS)))
    return record, df, draw(st.booleans())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_one_query_agrees_with_stepwise_checks(case: tuple[type[Record], pl.DataFrame, bool]
                                               ) -> None:
    record, df, require_rows = case
    fast = _outcome(V.validate_frame, df, record, require_rows)
    slow = _outcome(V.validate_frame_stepwise, df, record, require_rows)
    assert fast == slow


@pytest.mark.parametrize("record", sorted(ALL_RECORDS, key=lambda r: r.record_name),
                         ids=lambda r: r.record_name)
def test_clean_frames_take_one_query(record: type[Record], monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    """A valid frame (and an empty one) never reaches the stepwise checks, and its checks are
    counted in a single ``select``."""
    def stepwise(*_: Any, **__: Any) -> None:
        raise AssertionError("a clean frame reached the stepwise checks")

    selects: list[int] = []
    real_select = pl.DataFrame.select

    def counting_select(self: pl.DataFrame, *args: Any, **kwargs: Any) -> pl.DataFrame:
        selects.append(1)
        return real_select(self, *args, **kwargs)

    monkeypatch.setattr(V, "validate_frame_stepwise", stepwise)
    monkeypatch.setattr(pl.DataFrame, "select", counting_select)
    df = sample_frame(record)
    assert V.validate_frame(df, "<clean>", record_name=record.record_name,
                            specs=record.field_specs(), primary_key=record.primary_key,
                            require_rows=True) is df
    assert len(selects) == 1
    empty = df.clear()
    V.validate_frame(empty, "<empty>", record_name=record.record_name,
                     specs=record.field_specs(), primary_key=record.primary_key)


@pytest.mark.parametrize("plant", ["null", "nan", "literal", "dup", "empty", "fffd", "neg"])
def test_each_planted_problem_is_caught(plant: str) -> None:
    """Planted problems that apply to a record are refused by the one-query path (the property
    test above could in principle draw only clean frames)."""
    caught = 0
    for record in ALL_RECORDS:
        df = sample_frame(record)
        for column in df.columns:
            planted = _plant(df, column, 0, plant)
            if planted.equals(df):
                continue
            slow = _outcome(V.validate_frame_stepwise, planted, record, True)
            fast = _outcome(V.validate_frame, planted, record, True)
            assert fast == slow, (record.record_name, column)
            caught += fast is not None
    assert caught > 0
