"""Vectorised validation of a Polars frame against a record model's field specs.

Works on :class:`~and_toolkit.records.fields.FieldSpec` lists (from ``Record.field_specs()``), so
this module never imports the record base class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from and_toolkit.errors import RecordValidationError
from and_toolkit.records.fields import FieldSpec

_MAX_SHOWN = 5


def _rows_text(df: pl.DataFrame, mask: pl.Series, key: tuple[str, ...], field: str) -> str:
    """Render up to five offending rows (primary key + field) with their row numbers."""
    cols = list(dict.fromkeys(c for c in (*key, *field.split(",")) if c in df.columns))
    bad = df.with_row_index("row").filter(mask).select(["row", *cols]).head(_MAX_SHOWN)
    n_bad = int(mask.sum())
    text = "\n".join(f"    {r}" for r in bad.iter_rows(named=True))
    if n_bad > _MAX_SHOWN:
        text += f"\n    ... {n_bad - _MAX_SHOWN} more"
    return text


def _dtype_ok(spec: FieldSpec, actual: pl.DataType) -> bool:
    if spec.fixed_width:
        return isinstance(actual, pl.Array) and actual.inner == pl.Float32
    return actual == spec.dtype


def _float_cols(spec: FieldSpec) -> bool:
    dt = spec.dtype
    while isinstance(dt, (pl.List, pl.Array)):
        dt = dt.inner  # type: ignore[assignment]
    return dt in (pl.Float32, pl.Float64)


def _nonfinite_mask(df: pl.DataFrame, spec: FieldSpec) -> pl.Series:
    """Boolean [rows]: the row holds a NaN/inf (scalar, or any element of a list/vector)."""
    if spec.fixed_width:
        matrix = df[spec.name].to_numpy()  # [rows, width], zero-copy for Array(Float32)
        return pl.Series("m", ~np.isfinite(matrix).all(axis=1))
    col = pl.col(spec.name)
    if isinstance(spec.dtype, pl.List):
        expr = col.list.eval(~pl.element().is_finite()).list.any()
    else:
        expr = ~col.is_finite()
    return df.select(expr.fill_null(False).alias("m"))["m"]


def validate_frame(
    df: pl.DataFrame, source: str, *, record_name: str, specs: Sequence[FieldSpec],
    primary_key: tuple[str, ...], require_rows: bool = False
) -> pl.DataFrame:
    """Check columns, dtypes, nulls, finiteness, ranges, allowed values and key uniqueness.

    A clean frame costs one Polars query: every per-row check of every column is counted in one
    ``select`` (:func:`_problem_counts`). Only when a count is non-zero (or a column's name or
    dtype is wrong) does :func:`validate_frame_stepwise` run the checks one by one, in field
    order, to raise the first problem with its offending rows, so the error is the same as
    checking step by step would give (``tests/test_validate_fast.py`` compares the two).

    Args:
        df: the frame to check.
        source: file path or description used in error messages.
        record_name: the record's name (``Record.record_name``), used in error messages.
        specs: the record's field specs in column order (``Record.field_specs()``).
        primary_key: columns that must be unique together (``Record.primary_key``).
        require_rows: also refuse an empty frame.

    Returns:
        ``df`` unchanged.

    Raises:
        RecordValidationError: on the first problem found, naming source, record and field.
    """
    if _clean(df, specs, primary_key, require_rows):
        return df
    return validate_frame_stepwise(df, source, record_name=record_name, specs=specs,
                                   primary_key=primary_key, require_rows=require_rows)


def _clean(df: pl.DataFrame, specs: Sequence[FieldSpec], key: tuple[str, ...],
           require_rows: bool) -> bool:
    """True when the frame passes every check (columns, dtypes, then one counting query)."""
    if sorted(df.columns) != sorted(s.name for s in specs):
        return False
    if require_rows and df.height == 0:
        return False
    if not all(_dtype_ok(s, df.schema[s.name]) for s in specs):
        return False
    if df.height == 0:
        return True
    for spec in specs:  # fixed-width vectors: finiteness through numpy, as the stepwise check
        if spec.fixed_width and spec.finite and _nonfinite_mask(df, spec).any():
            return False
    return not any(_problem_counts(df, specs, key))


def _masks(spec: FieldSpec) -> list[pl.Expr]:
    """Boolean expressions [rows] of every per-row problem of one column (True = problem), the
    same masks :func:`validate_frame_stepwise` tests (fixed-width finiteness excepted: numpy)."""
    col = pl.col(spec.name)
    out: list[pl.Expr] = []
    if not spec.nullable:
        out.append(col.is_null())
    if isinstance(spec.dtype, pl.List) and not spec.fixed_width:
        out.append(col.list.eval(pl.element().is_null()).list.any().fill_null(False))
    if spec.finite and _float_cols(spec) and not spec.fixed_width:
        bad = (col.list.eval(~pl.element().is_finite()).list.any()
               if isinstance(spec.dtype, pl.List) else ~col.is_finite())
        out.append(bad.fill_null(False))
    if spec.allowed is not None:
        out.append(~col.is_in(list(spec.allowed)) & col.is_not_null())
    if spec.ge is not None:
        out.append((col < spec.ge).fill_null(False))
    if spec.gt is not None:
        out.append((col <= spec.gt).fill_null(False))
    if spec.le is not None:
        out.append((col > spec.le).fill_null(False))
    if spec.min_length is not None:
        lengths = col.str.len_chars() if spec.dtype == pl.String else col.list.len()
        out.append((lengths < spec.min_length).fill_null(False))
    if spec.dtype == pl.String:
        out.append(col.str.contains("\ufffd", literal=True).fill_null(False))
    return out


def _problem_counts(df: pl.DataFrame, specs: Sequence[FieldSpec], key: tuple[str, ...]
                    ) -> list[int]:
    """Rows failing each check of every column, and rows sharing a primary key, in one query."""
    exprs = [m.sum().alias(f"p{i}") for i, m in
             enumerate(m for spec in specs for m in _masks(spec))]
    if key:
        exprs.append(pl.struct(list(key)).is_duplicated().sum().alias("key"))
    if not exprs:
        return []
    return [int(v or 0) for v in df.select(exprs).row(0)]


def validate_frame_stepwise(
    df: pl.DataFrame, source: str, *, record_name: str, specs: Sequence[FieldSpec],
    primary_key: tuple[str, ...], require_rows: bool = False
) -> pl.DataFrame:
    """:func:`validate_frame`'s checks one at a time, in field order: raises the first problem
    with up to five offending rows (a query per check; :func:`validate_frame` calls this only
    for a frame that has a problem). Arguments, return value and errors as
    :func:`validate_frame`'s."""
    name = record_name
    expected = [s.name for s in specs]
    missing = [c for c in expected if c not in df.columns]
    extra = [c for c in df.columns if c not in expected]
    if missing:
        raise RecordValidationError(source, name, missing[0], f"missing column(s) {missing}")
    if extra:
        raise RecordValidationError(source, name, extra[0], f"unknown column(s) {extra}")
    if require_rows and df.height == 0:
        raise RecordValidationError(source, name, "*", "no rows, but rows are required")
    key = primary_key
    for spec in specs:
        actual = df.schema[spec.name]
        if not _dtype_ok(spec, actual):
            want = "Array(Float32, N)" if spec.fixed_width else str(spec.dtype)
            raise RecordValidationError(
                source, name, spec.name, f"dtype {actual} but the record requires {want}"
            )
        col = df[spec.name]
        if not spec.nullable and col.null_count():
            raise RecordValidationError(
                source, name, spec.name, f"{col.null_count()} null value(s) in a non-null field",
                _rows_text(df, col.is_null(), key, spec.name),
            )
        if isinstance(spec.dtype, pl.List) and not spec.fixed_width and df.height:
            inner_nulls = df.select(pl.col(spec.name).list.eval(pl.element().is_null()).list.any())
            mask = inner_nulls.to_series().fill_null(False)
            if mask.any():
                raise RecordValidationError(
                    source, name, spec.name, "null element inside a list",
                    _rows_text(df, mask, key, spec.name),
                )
        if spec.finite and _float_cols(spec) and df.height:
            mask = _nonfinite_mask(df, spec)
            if mask.any():
                raise RecordValidationError(
                    source, name, spec.name, f"{int(mask.sum())} row(s) hold NaN or inf",
                    _rows_text(df, mask, key, spec.name),
                )
        _check_values(df, spec, source, name, key)
    if key and df.height:
        dup = df.select(pl.struct(list(key)).is_duplicated().alias("d"))["d"]
        if dup.any():
            raise RecordValidationError(
                source, name, ",".join(key), f"{int(dup.sum())} row(s) share a primary key",
                _rows_text(df, dup, key, key[-1]),
            )
    return df


def _check_values(
    df: pl.DataFrame, spec: FieldSpec, source: str, name: str, key: tuple[str, ...]
) -> None:
    """Allowed-value, range and text checks of one column."""
    col = df[spec.name]
    checks: list[tuple[pl.Series, str]] = []
    if spec.allowed is not None:
        checks.append((~col.is_in(list(spec.allowed)) & col.is_not_null(),
                       f"value not in {list(spec.allowed)}"))
    if spec.ge is not None:
        checks.append(((col < spec.ge).fill_null(False), f"value below minimum {spec.ge}"))
    if spec.gt is not None:
        checks.append(((col <= spec.gt).fill_null(False), f"value not above {spec.gt}"))
    if spec.le is not None:
        checks.append(((col > spec.le).fill_null(False), f"value above maximum {spec.le}"))
    if spec.min_length is not None:
        lengths = col.str.len_chars() if spec.dtype == pl.String else col.list.len()
        checks.append(((lengths < spec.min_length).fill_null(False),
                       f"shorter than {spec.min_length}"))
    if spec.dtype == pl.String:
        checks.append((col.str.contains("\ufffd", literal=True).fill_null(False),
                       "text holds U+FFFD (undecodable bytes: input was not valid UTF-8)"))
    for mask, problem in checks:
        if mask.any():
            raise RecordValidationError(
                source, name, spec.name, f"{int(mask.sum())} row(s): {problem}",
                _rows_text(df, mask, key, spec.name),
            )
