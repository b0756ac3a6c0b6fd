"""The one builder of ResultRow records and of their keys.

A ResultRow is identified by ``(experiment, key)``; the report sorts rows by ``key`` as a string,
so the key also fixes the display order. Every experiment builds its rows with
:func:`result_row` and its keys with :func:`result_key`; nothing in the package parses a key back
into its parts. Whatever a consumer needs (class, block, K, τ, rule, cluster id ...) travels as a
column of the row (``model``, ``group``, ``series``, ``x``, ``metric``) or as an argument of the
function that builds the rows.

Key parts (:data:`KeyPart`) are typed and formatted in one way:

* ``str``: as is; must be non-empty and must not contain ``/`` (the separator).
* ``int``: decimal without padding (``3`` -> ``"3"``); ``bool`` is refused.
* ``float``: general format ``f"{v:g}"`` (``2.0`` -> ``"2"``, ``2.5`` -> ``"2.5"``); NaN / inf
  are refused.
* :class:`Padded`: a number zero-filled on the left to ``width`` characters so that keys sort
  in numeric order (``Padded(3, 3)`` -> ``"003"``, ``Padded(4.0, 6)`` -> ``"0004.0"``; a float
  is written as ``str(v)``).

:func:`tagged` makes a ``name=value`` part (``tagged("block", 3)`` -> ``"block=3"``) and
:func:`neuron_part` a ``layer#unit`` part. Parts are joined with ``/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from and_toolkit.records.models import ResultRow

__all__ = ["KeyPart", "Padded", "neuron_part", "result_columns", "result_key", "result_row",
           "tagged"]

SEPARATOR = "/"
"""Joins the parts of a key; no part may contain it."""


@dataclass(frozen=True)
class Padded:
    """A number written zero-filled to ``width`` characters (keys then sort numerically).

    Attributes:
        value: an int (``"%0*d"``-style) or a finite float (``str(value)`` zero-filled, e.g.
            ``4.0`` at width 6 -> ``"0004.0"``).
        width: minimum number of characters (>= 1); longer numbers are not cut.
    """

    value: int | float
    width: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise TypeError(f"Padded.value: expected int or float, got {self.value!r}")
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError(f"Padded.value: must be finite, got {self.value!r}")
        if self.width < 1:
            raise ValueError(f"Padded.width: must be >= 1, got {self.width}")

    def __str__(self) -> str:
        return str(self.value).zfill(self.width)


KeyPart = str | int | float | Padded
"""One part of a ResultRow key (see the module docstring for how each type is written)."""


def _text(part: KeyPart) -> str:
    """The text of one part. Raises TypeError / ValueError on a bad part."""
    if isinstance(part, bool):
        raise TypeError(f"key part: bool is not a key part ({part!r})")
    if isinstance(part, Padded):
        return str(part)
    if isinstance(part, int):
        return str(part)
    if isinstance(part, float):
        if not math.isfinite(part):
            raise ValueError(f"key part: must be finite, got {part!r}")
        return f"{part:g}"
    if isinstance(part, str):
        return part
    raise TypeError(f"key part: expected str, int, float or Padded, got {type(part).__name__}")


def result_key(*parts: KeyPart) -> str:
    """A ResultRow key: the typed ``parts`` written as text and joined with ``/``.

    Args:
        parts: at least one part; see the module docstring for the formatting of each type.

    Returns:
        The key, e.g. ``result_key("ast", "curve", Padded(5, 2), "max_cluster_support",
        Padded(3, 3))`` -> ``"ast/curve/05/max_cluster_support/003"``.

    Raises:
        ValueError: no parts, an empty part, a part containing ``/``, or a non-finite number.
        TypeError: a part of another type (bool included).
    """
    if not parts:
        raise ValueError("result_key: needs at least one part")
    texts = [_text(p) for p in parts]
    for i, t in enumerate(texts):
        if not t:
            raise ValueError(f"result_key: part {i} is empty (parts {texts})")
        if SEPARATOR in t:
            raise ValueError(f"result_key: part {i} {t!r} contains {SEPARATOR!r} (parts {texts})")
    return SEPARATOR.join(texts)


def tagged(name: str, value: KeyPart) -> str:
    """A ``name=value`` key part, e.g. ``tagged("cluster", Padded(7, 3))`` -> ``"cluster=007"``.

    Raises:
        ValueError / TypeError: as :func:`result_key` for ``value``; an empty ``name``.
    """
    if not name:
        raise ValueError("tagged: empty name")
    return f"{name}={_text(value)}"


def neuron_part(layer: str, unit: int) -> str:
    """The key part of one neuron: ``"<layer>#<unit>"`` (module path, unit index)."""
    return f"{layer}#{_text(unit)}"


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def result_row(experiment: str, key: str, metric: str, value: float | None, *,
               model: str = "", group: str = "", series: str = "", x: float | None = None,
               paper_value: float | None = None, note: str = "") -> dict[str, Any]:
    """One ResultRow as a dict (build a frame with ``ResultRow.frame(rows)``).

    Args:
        experiment: experiment id, e.g. "fig5".
        key: unique id of the row within the experiment, made by :func:`result_key`.
        metric: metric name.
        value: our value (None when not computable / not run; say why in ``note``).
        model, group, series, x, paper_value, note: see :class:`ResultRow`.

    Returns:
        A dict with exactly the ResultRow fields; NaN / inf in ``value``, ``x`` and
        ``paper_value`` become None.
    """
    return {"experiment": experiment, "key": key, "model": model, "group": group,
            "series": series, "x": _finite(x), "metric": metric, "value": _finite(value),
            "paper_value": _finite(paper_value), "note": note}


def result_columns(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` reduced to the ResultRow columns, in schema order (extra columns dropped)."""
    return df.select(ResultRow.polars_schema().names())
