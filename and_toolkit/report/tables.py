"""Table view models: pivot ResultRow frames into "ours / paper / difference" tables.

A :class:`Table` is plain data (header rows and body rows of :class:`Cell`) that the Jinja
templates render; nothing here produces HTML, so every text stays escaped by the template.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

INDEX_FIELDS: tuple[str, ...] = ("model", "group", "series", "metric", "x")
"""Columns of a ResultRow frame that may serve as a table index or pivot column."""

DASH = "\u2014"


@dataclass(frozen=True)
class Cell:
    """One table cell.

    Attributes:
        text: the displayed text (escaped by the template).
        cls: CSS classes (``num``, ``ours``, ``paper``, ``diff``, ``label``, ``missing``, ...).
        colspan: HTML colspan.
        rowspan: HTML rowspan.
        title: tooltip text (e.g. the full-precision value or a note).
    """

    text: str
    cls: str = ""
    colspan: int = 1
    rowspan: int = 1
    title: str = ""


@dataclass(frozen=True)
class Table:
    """A rendered-ready table: header rows and body rows of cells."""

    header: tuple[tuple[Cell, ...], ...]
    body: tuple[tuple[Cell, ...], ...]
    caption: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def ordered(values: Sequence[str], hints: Sequence[str] = ()) -> list[str]:
    """Distinct values: those named in ``hints`` first (in hint order), then first-seen order.

    Hints match case-insensitively, ignoring punctuation (``"cos_cubed"`` matches ``"Cos-Cubed"``).

    Args:
        values: values in frame order (may repeat).
        hints: preferred order.

    Returns:
        The distinct values, ordered.
    """
    rank = {_norm(h): i for i, h in reversed(list(enumerate(hints)))}
    seen = list(dict.fromkeys(values))
    return sorted(seen, key=lambda v: (rank.get(_norm(v), len(rank)), seen.index(v)))


P_VALUE_UNITS: frozenset[str] = frozenset({"p_value", "p", "pvalue"})
"""Metric ids holding p-values: always shown in scientific notation (never "0.000")."""

MAX_DECIMALS = 4
"""Most decimals a column gets while making distinct values print distinctly."""
SMALL_SET = 8
"""Up to this many distinct values, a column makes all of them print distinctly (a short row of
statistics); larger columns only separate the pairs they are given (ours vs. the paper)."""


def _fixed(value: float, decimals: int) -> str:
    return f"{value:,.{decimals}f}"


def decimals_for(values: Sequence[float], unit: object = "",
                 pairs: Sequence[tuple[float, float]] = ()) -> int | None:
    """Sensible number of decimals for a column of numbers (``None`` = scientific notation).

    Integers get 0 decimals; otherwise 1 decimal from 100 up, 2 from 1 up, 3 below 1, and
    scientific notation when every non-zero magnitude is below 0.001 or ``unit`` is a p-value
    metric (:data:`P_VALUE_UNITS`). Decimals are then added (up to :data:`MAX_DECIMALS`) until
    the two values of every differing pair print differently, and, for at most
    :data:`SMALL_SET` distinct values, until all of them do ("0.1 0.1" never stands for 0.104
    and 0.096).

    Args:
        values: the column's numbers (non-finite ones are ignored).
        unit: the metric id of the column (e.g. ``"p_value"``).
        pairs: values shown side by side that must not look equal when they differ
            (e.g. ours and the paper's).

    Returns:
        The number of decimals, or ``None`` for scientific notation.
    """
    if str(unit).lower() in P_VALUE_UNITS:
        return None
    finite = [v for v in values if math.isfinite(v)]
    if not finite or all(abs(v - round(v)) <= 1e-9 * max(1.0, abs(v)) and abs(v) < 1e15
                         for v in finite):
        return 0  # integers up to float noise (58.000000000000007 is a count of 29 / 50)
    largest = max(abs(v) for v in finite)
    if largest < 1e-3:
        return None
    decimals = 1 if largest >= 100 else 2 if largest >= 1 else 3
    distinct = {round(v, 12) for v in finite}
    distinct = distinct if len(distinct) <= SMALL_SET else set()
    apart = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)
             and not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)]  # float noise is equal

    def clash(d: int) -> bool:
        return (len({_fixed(v, d) for v in distinct}) < len(distinct)
                or any(_fixed(a, d) == _fixed(b, d) for a, b in apart))

    while decimals < MAX_DECIMALS and clash(decimals):
        decimals += 1
    return decimals


def fmt(value: float | None, decimals: int | None, *, signed: bool = False) -> str:
    """Format a number for a table cell.

    Args:
        value: the number; ``None`` renders as an em dash, NaN as ``NaN``, inf as ``∞``.
        decimals: decimals, or ``None`` for 3 significant digits in scientific notation.
        signed: prefix positive numbers with ``+`` (for differences).

    Returns:
        The text.
    """
    if value is None:
        return DASH
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return ("+" if signed and value > 0 else "") + ("\u221e" if value > 0 else "-\u221e")
    sign = "+" if signed and value > 0 else ""
    if not signed and decimals is not None and 0 < abs(value) < 0.5 * 10.0 ** -decimals:
        decimals = None  # would print as zero: show it in scientific notation
    if decimals is None:
        return f"{value:{sign}.2e}"
    text = f"{value:{sign},.{decimals}f}"
    return text.lstrip("+-") if float(text.replace(",", "")) == 0 else text


def _label(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class _Entry:
    value: float | None
    paper: float | None
    note: str
    key: str


def _lookup(
    df: pl.DataFrame, index: Sequence[str], columns: str, where: str
) -> dict[tuple[tuple[object, ...], object], _Entry]:
    out: dict[tuple[tuple[object, ...], object], _Entry] = {}
    for row in df.iter_rows(named=True):
        cell_key = (tuple(row[c] for c in index), row[columns])
        if cell_key in out:
            raise ValueError(
                f"{where}: rows {out[cell_key].key!r} and {row['key']!r} share "
                f"{dict(zip(index, cell_key[0], strict=True))} and {columns}={cell_key[1]!r}; "
                "give them distinct model/group/series/metric/x")
        out[cell_key] = _Entry(row["value"], row["paper_value"], row["note"], row["key"])
    return out


def _row_keys(df: pl.DataFrame, index: Sequence[str], order: Mapping[str, Sequence[str]]
              ) -> list[tuple[object, ...]]:
    ranks: list[dict[object, int]] = []
    for col in index:
        vals = df[col].to_list()
        if col == "x":
            distinct = sorted({v for v in vals if v is not None}) + ([None] if None in vals else [])
        else:
            distinct = ordered([str(v) for v in vals], order.get(col, ()))
        ranks.append({v: i for i, v in enumerate(distinct)})
    keys = list(dict.fromkeys(tuple(r[c] for c in index) for r in df.iter_rows(named=True)))
    return sorted(keys, key=lambda k: tuple(ranks[i][v] for i, v in enumerate(k)))


def _col_keys(df: pl.DataFrame, columns: str, order: Mapping[str, Sequence[str]]) -> list[object]:
    vals = df[columns].to_list()
    if columns == "x":
        return sorted({v for v in vals if v is not None}) + ([None] if None in vals else [])
    return list(ordered([str(v) for v in vals], order.get(columns, ())))


def _index_cells(keys: list[tuple[object, ...]], i: int, span: int, labels: Mapping[str, str]
                 ) -> tuple[Cell, ...]:
    """Label cells of row ``i``; a value equal to the row above (under equal parents) is blank."""
    cells = []
    prev = keys[i - 1] if i else None
    for level, value in enumerate(keys[i]):
        same = prev is not None and prev[: level + 1] == keys[i][: level + 1]
        text = "" if same else labels.get(_label(value), _label(value))
        cells.append(Cell(text, "label", rowspan=span))
    return tuple(cells)


def pivot_table(
    df: pl.DataFrame,
    *,
    index: Sequence[str],
    columns: str,
    layout: Literal["subcolumns", "subrows"] = "subcolumns",
    order: Mapping[str, Sequence[str]] | None = None,
    labels: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    where: str = "table",
) -> Table:
    """Pivot a ResultRow frame into a table of ours / paper / difference (ours - paper).

    Index columns whose values are all empty are dropped. Rows and columns follow ``order``
    hints, then the frame's order; ``x`` sorts numerically. Precision is chosen per metric.

    Args:
        df: a ResultRow frame (validated upstream).
        index: row-identifying columns, e.g. ``("model", "group", "series")``.
        columns: the column to pivot into table columns, e.g. ``"metric"`` or ``"x"``.
        layout: ``subcolumns`` puts ours / paper / Δ side by side under each column (only for
            columns holding a paper value); ``subrows`` stacks them as rows (for wide x grids).
        order: per-column display-order hints.
        labels: display labels for values (e.g. metric names with units).
        headers: display names of the index columns (e.g. ``group`` -> ``method``).
        where: name used in error messages (e.g. the section id).

    Returns:
        The table.

    Raises:
        ValueError: if two rows fall in the same cell, or a column is not a ResultRow field.
    """
    order = order or {}
    labels = labels or {}
    for col in (*index, columns):
        if col not in INDEX_FIELDS:
            raise ValueError(f"{where}: cannot pivot on {col!r}; use one of {INDEX_FIELDS}")
    index = [c for c in index if not all(v in (None, "") for v in df[c].to_list())]
    cells = _lookup(df, index, columns, where)
    row_keys = _row_keys(df, index, order)
    col_keys = _col_keys(df, columns, order)
    per_row = "metric" in index

    def unit_of(rk: tuple[object, ...], ck: object) -> object:
        if per_row:
            return rk[index.index("metric")]
        return ck if columns == "metric" else ""

    numbers: dict[object, list[float]] = {}
    pairs: dict[object, list[tuple[float, float]]] = {}
    for (rk, ck), e in cells.items():
        numbers.setdefault(unit_of(rk, ck), []).extend(
            v for v in (e.value, e.paper) if v is not None)
        if e.value is not None and e.paper is not None:
            pairs.setdefault(unit_of(rk, ck), []).append((e.value, e.paper))
    digits = {unit: decimals_for(vals, unit, pairs.get(unit, ()))
              for unit, vals in numbers.items()}

    def triple(rk: tuple[object, ...], ck: object) -> tuple[Cell, Cell, Cell]:
        e = cells.get((rk, ck))
        if e is None:
            blank = Cell("", "num missing")
            return blank, blank, blank
        d = digits[unit_of(rk, ck)]
        note = e.note
        ours = Cell(fmt(e.value, d), "num ours" + (" missing" if e.value is None else ""),
                    title=note)
        paper = Cell(fmt(e.paper, d) if e.paper is not None else "", "num paper")
        diff = ""
        if e.value is not None and e.paper is not None:
            diff = fmt(e.value - e.paper, d, signed=True)
        return ours, paper, Cell(diff, "num diff")

    col_labels = [labels.get(_label(c), _label(c)) for c in col_keys]
    index_head = [Cell((headers or {}).get(c, c), "label") for c in index]
    body: list[tuple[Cell, ...]] = []
    if layout == "subcolumns":
        with_paper = [any(cells.get((rk, ck)) is not None and cells[(rk, ck)].paper is not None
                          for rk in row_keys) for ck in col_keys]
        two_rows = any(with_paper)
        top = [Cell(c.text, c.cls, rowspan=2 if two_rows else 1) for c in index_head]
        sub: list[Cell] = []
        for lab, wp in zip(col_labels, with_paper, strict=True):
            if wp:
                top.append(Cell(lab, "group", colspan=3))
                sub += [Cell("ours", "sub"), Cell("paper", "sub"), Cell("\u0394", "sub")]
            else:
                top.append(Cell(lab, "group", rowspan=2 if two_rows else 1))
        header = (tuple(top), tuple(sub)) if two_rows else (tuple(top),)
        for i, rk in enumerate(row_keys):
            row = list(_index_cells(row_keys, i, 1, labels))
            for ck, wp in zip(col_keys, with_paper, strict=True):
                o, p, d = triple(rk, ck)
                row += [o, p, d] if wp else [o]
            body.append(tuple(row))
    else:
        header = (tuple(index_head) + (Cell("", "label"),)
                  + tuple(Cell(lab, "group") for lab in col_labels),)
        for i, rk in enumerate(row_keys):
            trip = [triple(rk, ck) for ck in col_keys]
            has_paper = any(p.text for _, p, _ in trip)
            span = 3 if has_paper else 1
            body.append(_index_cells(row_keys, i, span, labels) + (Cell("ours", "sub"),)
                        + tuple(t[0] for t in trip))
            if has_paper:
                body.append((Cell("paper", "sub"),) + tuple(t[1] for t in trip))
                body.append((Cell("\u0394", "sub"),) + tuple(t[2] for t in trip))
    return Table(header=header, body=tuple(body), notes=distinct_notes(df))


def distinct_notes(df: pl.DataFrame) -> tuple[str, ...]:
    """Distinct non-empty notes of a frame, in first-seen order."""
    return tuple(dict.fromkeys(n for n in df["note"].to_list() if n))


def stats_table(groups: Sequence[tuple[str, str, np.ndarray]], value_label: str) -> Table:
    """Summary statistics (n, mean, median, quartiles) of distributions.

    Args:
        groups: ``(panel, group, values)`` triples; values is a 1-D float array.
        value_label: name of the measured quantity (first header cell).

    Returns:
        The table.
    """
    header = (tuple(Cell(h, "label" if i < 2 else "group") for i, h in enumerate(
        (value_label, "group", "n", "mean", "median", "q1", "q3"))),)
    body = []
    prev = None
    for panel, group, values in groups:
        v = values[np.isfinite(values)]
        stats = ([float(v.mean()), *map(float, np.quantile(v, [0.5, 0.25, 0.75]))]
                 if v.size else [math.nan] * 4)
        d = decimals_for(stats)
        body.append((Cell("" if panel == prev else panel, "label"), Cell(group, "label"),
                     Cell(f"{int(v.size):,}", "num"), *(Cell(fmt(s, d), "num") for s in stats)))
        prev = panel
    return Table(header=header, body=tuple(body))
