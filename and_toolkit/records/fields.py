"""What the frame validator knows about one record field (shared by the base class and validator).

:class:`FieldSpec` is derived from a record model's annotations by
:meth:`and_toolkit.records.base.Record.field_specs` and consumed by
:func:`and_toolkit.records.validate.validate_frame`; keeping it here lets the validator work
without importing the record base class (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class FieldSpec:
    """What the validator needs to know about one field, derived from the model.

    Attributes:
        name: column name.
        dtype: Polars dtype (for a fixed-width vector, ``Array(Float32, 1)`` as a placeholder).
        nullable: nulls allowed (``X | None``).
        finite: NaN / inf refused (floats, unless marked ``AllowNonFinite``).
        fixed_width: stored as ``Array(Float32, N)`` with N taken from the frame.
        allowed: allowed values of a ``Literal`` field, or None.
        ge: inclusive lower bound, or None.
        le: inclusive upper bound, or None.
        gt: exclusive lower bound, or None.
        min_length: minimum string / list length, or None.
    """

    name: str
    dtype: pl.DataType
    nullable: bool
    finite: bool
    fixed_width: bool
    allowed: tuple[str, ...] | None
    ge: float | None
    le: float | None
    gt: float | None
    min_length: int | None
