"""The record base class: one pydantic model per record kind is the single source of truth.

From a record model we derive (a) the Polars schema of a frame of such records, (b) a vectorised
frame validator and (c) a JSON Schema. Validation never runs pydantic row by row: it checks
columns, dtypes, nulls, finiteness, ranges, allowed values and primary-key uniqueness with Polars
expressions, so validating a million-row frame costs milliseconds.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

import annotated_types
import polars as pl
from pydantic import BaseModel, ConfigDict

from and_toolkit.errors import RecordValidationError
from and_toolkit.records.fields import FieldSpec
from and_toolkit.records.validate import validate_frame


@dataclass(frozen=True)
class _Width:
    """Marker: a Polars width for an int or float field (e.g. Int32, Float32)."""

    dtype: type[pl.DataType]


I32 = _Width(pl.Int32)
"""Annotate an ``int`` field with ``Annotated[int, I32]`` to store it as Int32."""
F32 = _Width(pl.Float32)
"""Annotate a ``float`` field with ``Annotated[float, F32]`` to store it as Float32."""


@dataclass(frozen=True)
class AllowNonFinite:
    """Marker: this float field may hold NaN / inf (e.g. a similarity score that is undefined)."""


@dataclass(frozen=True)
class FixedWidthVector:
    """Marker: a ``list[float]`` field stored as ``Array(Float32, width)``.

    The width is the same for every row of one frame (e.g. the number of probe clips N) and is
    taken from the frame; the validator checks the inner dtype and that the width is consistent.
    """


Vector = Annotated[list[Annotated[float, F32]], FixedWidthVector()]
"""A fixed-width float32 vector (``Array(Float32, N)`` in Polars)."""


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """Return (inner annotation, nullable) for ``X | None`` / ``Optional[X]``."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
        raise TypeError(f"unsupported union annotation {annotation!r}")
    return annotation, False


def _polars_dtype(annotation: Any) -> pl.DataType:
    """Map a field annotation (already stripped of ``| None``) to a Polars dtype."""
    metadata: tuple[Any, ...] = ()
    if get_origin(annotation) is Annotated:
        annotation, *meta = get_args(annotation)
        metadata = tuple(meta)
    if any(isinstance(m, FixedWidthVector) for m in metadata):
        return pl.Array(pl.Float32, 1)  # width is a placeholder, checked per frame
    width = next((m.dtype for m in metadata if isinstance(m, _Width)), None)
    origin = get_origin(annotation)
    if origin is Literal:
        return pl.String()
    if origin is list:
        (inner,) = get_args(annotation)
        return pl.List(_polars_dtype(inner))
    if annotation is bool:
        return pl.Boolean()
    if annotation is int:
        return (width or pl.Int64)()
    if annotation is float:
        return (width or pl.Float64)()
    if annotation is str:
        return pl.String()
    raise TypeError(f"no Polars dtype for annotation {annotation!r}")


def _field_spec(name: str, annotation: Any, metadata: Sequence[Any]) -> FieldSpec:
    inner, nullable = _strip_optional(annotation)
    all_meta = list(metadata)
    if get_origin(inner) is Annotated:
        all_meta.extend(get_args(inner)[1:])
    base = get_args(inner)[0] if get_origin(inner) is Annotated else inner
    allowed = tuple(get_args(base)) if get_origin(base) is Literal else None
    bounds: dict[str, float | None] = {"ge": None, "le": None, "gt": None}
    min_length = None
    for m in all_meta:
        if isinstance(m, annotated_types.Ge):
            bounds["ge"] = float(m.ge)  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Le):
            bounds["le"] = float(m.le)  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Gt):
            bounds["gt"] = float(m.gt)  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.MinLen):
            min_length = m.min_length
    dtype = _polars_dtype(inner)
    width = next((m.dtype for m in all_meta if isinstance(m, _Width)), None)
    if width is not None and not isinstance(dtype, (pl.List, pl.Array)):
        dtype = width()
    return FieldSpec(
        name=name,
        dtype=dtype,
        nullable=nullable,
        finite=not any(isinstance(m, AllowNonFinite) for m in all_meta),
        fixed_width=any(isinstance(m, FixedWidthVector) for m in all_meta),
        allowed=allowed,
        ge=bounds["ge"],
        le=bounds["le"],
        gt=bounds["gt"],
        min_length=min_length,
    )


class Record(BaseModel):
    """Base of every record kind. Subclasses set the three class attributes below."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    record_name: ClassVar[str]
    """Name stored in Parquet metadata and used for ``schemas/<record_name>.json``."""
    schema_version: ClassVar[int] = 1
    """Bumped whenever a field changes; readers refuse unknown versions."""
    primary_key: ClassVar[tuple[str, ...]]
    """Columns that identify a row; unique within a frame; writes are sorted by them."""

    # ----- derived schema -------------------------------------------------------------------
    @classmethod
    def field_specs(cls) -> list[FieldSpec]:
        """Field specs in declaration order (the column order of frames)."""
        return [
            _field_spec(name, info.annotation, info.metadata)
            for name, info in cls.model_fields.items()
        ]

    @classmethod
    def polars_schema(cls, width: int | None = None) -> pl.Schema:
        """The Polars schema of a frame of these records.

        Args:
            width: width of fixed-width vector fields (e.g. the number of probe clips N); needed
                only by records that have one.
        """
        cols: dict[str, pl.DataType] = {}
        for spec in cls.field_specs():
            if spec.fixed_width:
                if width is None:
                    raise ValueError(f"{cls.record_name}.{spec.name}: vector width required")
                cols[spec.name] = pl.Array(pl.Float32, width)
            else:
                cols[spec.name] = spec.dtype
        return pl.Schema(cols)

    @classmethod
    def empty(cls, width: int | None = None) -> pl.DataFrame:
        """An empty frame with the record's exact schema."""
        return pl.DataFrame(schema=cls.polars_schema(width))

    @classmethod
    def frame(cls, rows: Iterable[Mapping[str, Any]], width: int | None = None) -> pl.DataFrame:
        """Build a frame of the exact schema from dict rows (no per-row pydantic validation).

        Raises:
            RecordValidationError: a row misses a field or has an unknown one.
        """
        rows = list(rows)
        names = list(cls.model_fields)
        for i, row in enumerate(rows):
            if set(row) != set(names):
                missing = sorted(set(names) - set(row))
                extra = sorted(set(row) - set(names))
                raise RecordValidationError(
                    "<rows>", cls.record_name, ",".join(missing + extra) or "?",
                    f"row {i}: missing fields {missing}, unknown fields {extra}",
                )
        if width is None and any(s.fixed_width for s in cls.field_specs()) and rows:
            spec = next(s for s in cls.field_specs() if s.fixed_width)
            width = len(rows[0][spec.name])
        schema = cls.polars_schema(width)
        if not rows:
            return pl.DataFrame(schema=schema)
        data = {n: [r[n] for r in rows] for n in names}
        return pl.DataFrame(data, schema=schema, strict=False)

    @classmethod
    def validate_frame(
        cls, df: pl.DataFrame, source: str = "<frame>", *, require_rows: bool = False
    ) -> pl.DataFrame:
        """Validate a frame against the record, vectorised. Returns the frame unchanged.

        Raises:
            RecordValidationError: naming ``source``, the record, the field and offending rows.
        """
        return validate_frame(df, source, record_name=cls.record_name, specs=cls.field_specs(),
                              primary_key=cls.primary_key, require_rows=require_rows)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON Schema of one record, with record name, version and primary key."""
        schema = cls.model_json_schema()
        schema["x-record-name"] = cls.record_name
        schema["x-schema-version"] = cls.schema_version
        schema["x-primary-key"] = list(cls.primary_key)
        return schema
