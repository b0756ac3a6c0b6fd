"""Pivot tables of ResultRow frames: ours / paper / difference, ordering, precision, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest

from and_toolkit.records.models import ResultRow
from and_toolkit.report.tables import Table, decimals_for, fmt, ordered, pivot_table, stats_table


def texts(t: Table) -> tuple[list[list[str]], list[list[str]]]:
    return ([[c.text for c in r] for r in t.header], [[c.text for c in r] for r in t.body])


def test_pivot_subcolumns_show_ours_paper_and_difference(result_row: Any) -> None:
    df = ResultRow.frame([
        result_row("t", "a1", model="AST", group="DB", metric="top1", value=98.0, paper=100.0),
        result_row("t", "a2", model="AST", group="DB", metric="cos", value=0.8487, paper=0.85),
        result_row("t", "a3", model="AST", group="TAB", metric="top1", value=90.0, paper=96.0),
        result_row("t", "a4", model="AST", group="TAB", metric="cos", value=0.5, paper=None),
        result_row("t", "a5", model="AST", group="ICL", metric="top1", value=None, paper=72.0,
            note="not run: no LLM"),
        result_row("t", "a6", model="AST", group="ICL", metric="n", value=50.0, paper=None),
    ])
    t = pivot_table(df, index=("model", "group", "series"), columns="metric",
                    order={"group": ("ICL", "TAB", "DB"), "metric": ("top1", "cos")},
                    headers={"group": "method"})
    header, body = texts(t)
    # series is all-empty -> dropped; metric columns with paper values get three sub-columns
    assert header == [["model", "method", "top1", "cos", "n"],
                      ["ours", "paper", "\u0394", "ours", "paper", "\u0394"]]
    assert [c.colspan for c in t.header[0]] == [1, 1, 3, 3, 1]
    assert [c.rowspan for c in t.header[0]] == [2, 2, 1, 1, 2]
    assert body == [
        ["AST", "ICL", "\u2014", "72", "", "", "", "", "50"],
        ["", "TAB", "90", "96", "-6", "0.500", "", "", ""],
        ["", "DB", "98", "100", "-2", "0.849", "0.850", "-0.001", ""],
    ]
    assert t.body[0][2].title == "not run: no LLM"
    assert "missing" in t.body[0][2].cls
    assert t.notes == ("not run: no LLM",)


def test_pivot_without_paper_values_has_one_header_row(result_row: Any) -> None:
    df = ResultRow.frame([result_row("t", f"k{i}", series=s, metric="m", value=float(i))
                          for i, s in enumerate(("b", "a"))])
    header, body = texts(pivot_table(df, index=("model", "group", "series"), columns="metric"))
    assert header == [["series", "m"]]
    assert body == [["b", "0"], ["a", "1"]]  # frame order when no hint applies


def test_pivot_subrows_for_x_grids_sorts_x_numerically(result_row: Any) -> None:
    df = ResultRow.frame([
        result_row("f", f"r{x}", model="AST", series="random", x=x, metric="accuracy",
            value=0.9 - x / 100, paper=0.95 if x == 0 else None)
        for x in (10.0, 2.0, 0.0)
    ] + [result_row("f", "n0", model="AST", series="nouns", x=0.0, metric="accuracy", value=0.95)])
    header, body = texts(pivot_table(df, index=("model", "group", "series", "metric"),
                                     columns="x", layout="subrows"))
    assert header == [["model", "series", "metric", "", "0", "2", "10"]]
    assert body == [
        ["AST", "random", "accuracy", "ours", "0.900", "0.880", "0.800"],
        ["paper", "0.950", "", ""],
        ["\u0394", "-0.050", "", ""],
        ["", "nouns", "accuracy", "ours", "0.950", "", ""],
    ]


def test_pivot_rejects_two_rows_in_one_cell_naming_both_keys(result_row: Any) -> None:
    df = ResultRow.frame([result_row("t", "first", group="DB", metric="top1", value=1.0),
                          result_row("t", "second", group="DB", metric="top1", value=2.0)])
    with pytest.raises(ValueError, match=r"table7: rows 'first' and 'second'"):
        pivot_table(df, index=("group",), columns="metric", where="table7")


def test_pivot_rejects_unknown_pivot_column(result_row: Any) -> None:
    df = ResultRow.frame([result_row("t", "k", metric="m", value=1.0)])
    with pytest.raises(ValueError, match="cannot pivot on 'note'"):
        pivot_table(df, index=("group",), columns="note")


def test_ordered_uses_hints_case_and_punctuation_insensitively() -> None:
    assert ordered(["wpmi", "Cos-Cubed", "x", "cos", "x"], ("cos", "cos_cubed", "wpmi")) == [
        "cos", "Cos-Cubed", "wpmi", "x"]


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0, 2.0, 100.0], 0), ([3317.76, 3000.0], 1), ([0.5, 3.25], 2), ([0.85, 0.2], 3),
    ([2e-5, 1e-4], None), ([math.nan, 2.0], 0), ([], 0),
])
def test_decimals_for(values: list[float], expected: int | None) -> None:
    assert decimals_for(values) == expected


def test_fmt_special_values() -> None:
    assert fmt(None, 2) == "\u2014"
    assert fmt(math.nan, 2) == "NaN"
    assert fmt(math.inf, 2) == "\u221e"
    assert fmt(-math.inf, 2) == "-\u221e"
    assert fmt(1.5, 2, signed=True) == "+1.50"
    assert fmt(-0.0, 0, signed=True) == "0"
    assert fmt(-0.001, 1, signed=True) == "0.0"
    assert fmt(0.0, 2, signed=True) == "0.00"
    assert fmt(12345.678, 1) == "12,345.7"
    assert fmt(2.1e-5, 3) == "2.10e-05"  # would round to 0.000
    assert fmt(2.1e-5, None) == "2.10e-05"


def test_stats_table_summarises_each_group() -> None:
    import numpy as np

    t = stats_table([("loud", "with", np.array([1.0, 2.0, 3.0, np.nan])),
                     ("loud", "without", np.array([]))], "panel")
    _, body = texts(t)
    assert body[0] == ["loud", "with", "3", "2.00", "2.00", "1.50", "2.50"]
    assert body[1] == ["", "without", "0", "NaN", "NaN", "NaN", "NaN"]


def test_p_values_are_scientific_never_zero() -> None:
    d = decimals_for([0.41, 2.1e-5], "p_value")
    assert d is None
    assert fmt(0.41, d) == "4.10e-01" and fmt(2.1e-5, d) == "2.10e-05"
    assert fmt(3e-20, d) != "0.000" and fmt(0.0004, decimals_for([0.0004, 0.5])) == "4.00e-04"


def test_distinct_values_never_print_identically() -> None:
    # ours vs the paper: 0.104 and 0.096 would both be "0.10" at 2 decimals
    d = decimals_for([1.5, 0.104, 0.096], "x", pairs=[(0.104, 0.096)])
    assert fmt(0.104, d) != fmt(0.096, d)
    # a short row of statistics: every distinct value distinct
    d = decimals_for([0.0502, 0.0496, 0.0365])
    assert len({fmt(v, d) for v in (0.0502, 0.0496, 0.0365)}) == 3
    # equal up to float noise (a mean of three equal seeds) is not "distinct"
    assert decimals_for([0.95, 0.5], pairs=[(0.95, (0.95 + 0.95 + 0.95) / 3)]) == 3
    # capped: values equal to 12 places stay at the cap, no runaway precision
    assert decimals_for([0.1, 0.2], pairs=[(0.1, 0.1 + 1e-8)]) == 4


def test_thousands_separators_are_consistent() -> None:
    assert fmt(55346.0, 0) == "55,346" and fmt(-2358.0, 0, signed=True) == "-2,358"
    assert fmt(12307.7, 1) == "12,307.7" and fmt(2651.0, 0, signed=True) == "+2,651"


def test_float_noise_on_integers_keeps_zero_decimals() -> None:
    assert decimals_for([57.99999999999999, 56.00000000000001, 90.0]) == 0
    assert fmt(57.99999999999999, 0) == "58"
    assert decimals_for([57.5, 90.0]) == 2
