"""Section view models: turn one experiment's ResultRow frame into tables and inline figures.

Plotted rows are those with a non-null ``x``; the rest form the summary table. A frame that is
missing, empty or whose every row carries a ``not run: ...`` note becomes a "not run" section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

import numpy as np
import polars as pl
from markupsafe import Markup

from and_toolkit.report import figures as F
from and_toolkit.report.context import ExtraTable
from and_toolkit.report.sections import LABELS, ORDER, SectionSpec
from and_toolkit.report.tables import Table, ordered, pivot_table, stats_table

Status = Literal["ok", "not run", "error"]
_PAPER_KEY = {
    "line": "Solid lines with filled markers: this run (error bars: \u00b1 1 SD over seeds where "
            "there are several); dashed lines with hollow markers: the paper's values.",
    "bar": "Bars: this run; black ticks: the paper's values.",
    "dumbbell": "Black dots \u2192 blue triangles: this run; hollow markers: the paper's "
                "values.",
}
_PAPER_PANEL = {
    "line": "Panels marked 'this run': our values (error bars: \u00b1 1 SD over seeds where there "
            "are several); panels marked 'paper': the paper's values, on their own axis because "
            "the scales differ (one shared axis would flatten one of them).",
    "dumbbell": "Black dots \u2192 blue triangles: this run; the right-hand panel: the paper's "
                "values (hollow), on their own axis because the scales differ.",
}
Results = Mapping[str, pl.DataFrame]


@dataclass(frozen=True)
class FigureView:
    """One inline figure: ``svg`` is trusted markup produced by :mod:`figures`."""

    id: str
    svg: Markup
    caption: str


@dataclass(frozen=True)
class SectionView:
    """Everything the template needs for one section."""

    id: str
    title: str
    caption: str
    status: Status
    toc: str = ""
    reason: str = ""
    figures: tuple[FigureView, ...] = ()
    tables: tuple[Table, ...] = ()
    data_tables: tuple[Table, ...] = ()
    extra_tables: tuple[ExtraTable, ...] = ()
    notes: tuple[str, ...] = ()
    grid: bool = False
    explain: tuple[str, ...] = ()


def _label(value: str) -> str:
    return LABELS.get(value, value)


def not_run_reason(df: pl.DataFrame | None, section_id: str) -> str | None:
    """Why a section is not run, or ``None`` when it has results.

    Args:
        df: the experiment's frame, or ``None`` when the run produced none.
        section_id: the section id (for the message).

    Returns:
        ``None`` if at least one row does not carry a ``not run`` note; otherwise the reason.
    """
    if df is None:
        return f"no result for experiment '{section_id}' in this run"
    if df.height == 0:
        return f"experiment '{section_id}' returned no rows"
    notes = [n.strip() for n in df["note"].to_list()]
    if all(n.lower().startswith("not run") for n in notes):
        reasons = dict.fromkeys(n[len("not run"):].lstrip(" :-").strip() for n in notes)
        return "; ".join(r for r in reasons if r) or "no reason given"
    return None


def _distinct(df: pl.DataFrame, col: str) -> list[str]:
    return ordered([str(v) for v in df[col].to_list()], ORDER.get(col, ()))


def _varying(df: pl.DataFrame, cols: Sequence[str]) -> list[str]:
    return [c for c in cols if df[c].n_unique() > 1]


def _parts(df: pl.DataFrame, by: Sequence[str]) -> list[tuple[str, pl.DataFrame]]:
    """Split ``df`` by the columns ``by`` (display order); title = joined non-empty labels."""
    if not by:
        return [("", df)]
    rank = [{v: i for i, v in enumerate(_distinct(df, c))} for c in by]
    keys = sorted(dict.fromkeys(df.select(by).iter_rows()),
                  key=lambda k: tuple(r[v] for r, v in zip(rank, k, strict=True)))
    out = []
    for k in keys:
        mask = pl.all_horizontal([pl.col(c) == v for c, v in zip(by, k, strict=True)])
        out.append((" \u00b7 ".join(_label(v) for v in k if v), df.filter(mask)))
    return out


def _mean_sd(line: pl.DataFrame) -> pl.DataFrame:
    """One row per x: mean of ``value`` over repeated rows (seeds), their SD, first paper value."""
    return (line.group_by("x", maintain_order=True)
            .agg(pl.col("value").mean(), pl.col("value").std().alias("sd"),
                 pl.col("paper_value").first()).sort("x"))


def _line_figure(spec: SectionSpec, rows: pl.DataFrame, fig_id: str) -> str:
    panel_by = [c for c in spec.panel_by if c != "metric"]
    multi_metric = rows["metric"].n_unique() > 1
    split = spec.paper_panel and rows["paper_value"].is_not_null().any()
    panels, paper_panels = [], []
    for title, part in _parts(rows, [*panel_by, "metric"] if multi_metric else panel_by):
        line_by = _varying(part, [c for c in ("model", "group", "series") if c not in panel_by])
        series, paper = [], []
        for label, line in _parts(part, line_by):
            agg = _mean_sd(line)
            label = label or _label(line["metric"][0])
            x, sd = tuple(agg["x"]), agg["sd"].to_list()
            err = tuple(sd) if any(v is not None and v > 0 for v in sd) else None
            paper_y = tuple(agg["paper_value"].to_list())
            series.append(F.LineSeries(label, x, tuple(agg["value"]),
                                       None if split else paper_y, err))
            if split and any(v is not None for v in paper_y):
                paper.append(F.LineSeries(label, x, paper_y))
        y_label = _label(part["metric"][0]) if multi_metric else ""
        ours_title = f"{title} \u00b7 this run" if split and title else title or (
            "this run" if split else "")
        panels.append(F.LinePanel(ours_title, tuple(series), y_label))
        if paper:
            paper_panels.append(F.LinePanel(f"{title} \u00b7 paper" if title else "paper",
                                            tuple(paper), y_label))
    return F.line_plot(panels + paper_panels, x_label=spec.x_label or "x",
                       y_label=spec.y_label or _label(rows["metric"][0]), fig_id=fig_id,
                       title=spec.title)


def _shares(spec: SectionSpec, rows: pl.DataFrame, results: Results) -> pl.DataFrame:
    """Divide each model's values (and paper values) by its denominator row, in %."""
    if spec.share_of is None:
        return rows
    exp, metric = spec.share_of
    den = results.get(exp)
    den = den.filter(pl.col("metric") == metric) if den is not None else None
    if den is None or den.height == 0:
        raise ValueError(f"{spec.id}: drawn as shares of {exp}/{metric}, but the run has no "
                         f"'{metric}' rows in results['{exp}']")
    look = {m: (v, p) for m, v, p in den.select("model", "value", "paper_value").iter_rows()}
    missing = sorted(set(rows["model"].to_list()) - set(look))
    if missing:
        raise ValueError(f"{spec.id}: no {exp}/{metric} row for model(s) {missing}")
    ours = pl.Series([look[m][0] for m in rows["model"]], dtype=pl.Float64)
    paper = pl.Series([look[m][1] for m in rows["model"]], dtype=pl.Float64)
    return rows.with_columns(value=pl.col("value") * 100 / ours,
                             paper_value=pl.col("paper_value") * 100 / paper)


def _bar_figure(spec: SectionSpec, rows: pl.DataFrame, fig_id: str) -> str:
    panels = []
    for title, part in _parts(rows, _varying(rows, ("model", "group", "metric"))):
        part = part.sort("x")
        panels.append(F.BarPanel(title, tuple(_label(s) for s in part["series"]),
                                 tuple(part["value"]), tuple(part["paper_value"])))
    value_label = spec.y_label if rows["metric"].n_unique() == 1 else "value"
    return F.bar_chart(panels, value_label=value_label or _label(rows["metric"][0]),
                       fig_id=fig_id, title=spec.title)


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def _dumbbell_figures(spec: SectionSpec, rows: pl.DataFrame, fig_id: str,
                      marked: pl.DataFrame) -> list[str]:
    out = []
    for i, (title, part) in enumerate(_parts(rows, _varying(rows, ("model", "metric")))):
        targets = tuple(marked.filter(pl.col("model") == part["model"][0])["group"].unique(
            maintain_order=True).to_list()) if spec.mark_table_groups else ()
        series = _distinct(part, "series")
        first, second = (spec.series_pair if set(spec.series_pair) <= set(series)
                         else (series + series)[:2])
        cats = _distinct(part, "group")
        look = {(r["group"], r["series"]): r for r in part.iter_rows(named=True)}

        def col(s: str, field: str, cats: list[str] = cats,
                look: dict[tuple[str, str], dict[str, object]] = look) -> tuple[float | None, ...]:
            return tuple(_num(look[(c, s)][field]) if (c, s) in look else None for c in cats)

        def paper(s: str, cats: list[str] = cats) -> dict[str, float] | None:
            vals = {c: v for c, v in zip(cats, col(s, "paper_value"), strict=True) if v is not None}
            return vals or None

        panel = F.DumbbellPanel(title, tuple(cats), col(first, "value"),
                                col(second, "value"), first, second, paper(first), paper(second),
                                marked=targets)
        out.append(F.dumbbell_plot(panel, y_label=spec.y_label or _label(part["metric"][0]),
                                   fig_id=f"{fig_id}{i}", title=spec.title))
    return out


def _dist_figure(spec: SectionSpec, rows: pl.DataFrame, fig_id: str) -> tuple[str, Table]:
    panels, stats = [], []
    for title, part in _parts(rows, _varying(rows, ("model", "group", "metric")) or ["metric"]):
        groups = tuple((_label(s), np.asarray(g["value"].fill_null(np.nan).to_numpy(), float))
                       for s, g in _parts(part, ["series"]))
        panels.append(F.DistPanel(title, _label(part["metric"][0]), groups))
        stats += [(title, lab, vals) for lab, vals in groups]
    svg = F.distribution_plot(panels, fig_id=fig_id, title=spec.title)
    return svg, stats_table(stats, "panel")


def _wordclouds(spec: SectionSpec, rows: pl.DataFrame, fig_id: str) -> list[FigureView]:
    out = []
    for i, (title, part) in enumerate(_parts(rows, _varying(rows, ("model", "group", "metric")))):
        freqs = {s: float(v) for s, v in zip(part["series"], part["value"], strict=True)
                 if v is not None}
        svg = F.word_cloud(freqs, fig_id=f"{fig_id}-{i}", title=title or spec.title)
        out.append(FigureView(f"{fig_id}-{i}", Markup(svg), title))
    return out


def _figure_part(spec: SectionSpec, rows: pl.DataFrame, tabled: pl.DataFrame
                 ) -> tuple[list[FigureView], list[Table]]:
    fid = f"{spec.id}-fig"
    has_paper = rows["paper_value"].is_not_null().any()
    caption = (_PAPER_KEY.get(spec.kind, "") if has_paper
               else "No paper values to compare with.")
    if has_paper and spec.paper_panel:
        caption = _PAPER_PANEL.get(spec.kind, caption)
    piv = partial(pivot_table, order=ORDER, labels=LABELS, where=spec.id)

    def one(svg: str) -> list[FigureView]:
        return [FigureView(fid, Markup(svg), caption)]  # figures escape their own text

    if spec.kind == "line":
        data = piv(_seed_means(rows), index=("model", "group", "series", "metric"), columns="x",
                   layout="subrows")
        return one(_line_figure(spec, rows, fid)), [data]
    if spec.kind == "bar":
        data = piv(rows, index=("model", "group", "series"), columns="metric")
        return one(_bar_figure(spec, rows, fid)), [data]
    if spec.kind == "dumbbell":
        data = piv(rows, index=("model", "metric", "group"), columns="series",
                   headers=spec.headers)
        figs = [FigureView(f"{fid}{i}", Markup(svg), caption)
                for i, svg in enumerate(_dumbbell_figures(spec, rows, fid, tabled))]
        return figs, [data]
    if spec.kind == "distribution":
        svg, stats = _dist_figure(spec, rows, fid)
        return one(svg), [stats]
    if spec.kind == "wordcloud":
        return _wordclouds(spec, rows, fid), []
    return [], [piv(rows, index=(*spec.index, "metric"), columns="x", layout="subrows")]


def _seed_means(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows repeated per (model, group, series, metric, x) (one per seed) -> their mean."""
    keys = ["model", "group", "series", "metric", "x"]
    if rows.select(keys).is_unique().all():
        return rows
    return (rows.group_by(keys, maintain_order=True)
            .agg(pl.col("experiment", "key").first(), pl.col("value").mean(),
                 pl.col("paper_value").first(),
                 (pl.lit("mean of ") + pl.len().cast(pl.String) + pl.lit(" seeds")).alias("note"))
            .select(rows.columns))


def build_section(spec: SectionSpec, df: pl.DataFrame | None,
                  extra: Sequence[ExtraTable] = (), results: Results | None = None
                  ) -> SectionView:
    """Build the view of one section.

    Args:
        spec: how to render it.
        df: the experiment's ResultRow frame (validated), or ``None`` if the run has none.
        extra: extra tables for this section (from the report context).
        results: every result frame of the run (for ``spec.share_of`` denominators).

    Returns:
        The view; status ``not run`` with a reason when there is nothing to show, ``error``
        with the message when the frame cannot be drawn (e.g. two rows in one table cell).
    """
    view = SectionView(id=spec.id, title=spec.title, caption=spec.caption, status="ok",
                       toc=spec.toc or spec.title, extra_tables=tuple(extra),
                       explain=spec.explain)
    reason = not_run_reason(df, spec.id)
    if df is None and spec.absent:
        reason = spec.absent
    if reason is not None or df is None:
        return view if extra else replace(view, status="not run", reason=reason or "",
                                          explain=())
    is_table = spec.kind in ("table", "qualitative")
    plotted = df.clear() if is_table else df.filter(pl.col("x").is_not_null())
    tabled = df if is_table else df.filter(pl.col("x").is_null())
    try:
        plotted = _shares(spec, plotted, results or {}) if plotted.height else plotted
        figs, data_tables = (_figure_part(spec, plotted, tabled) if plotted.height
                             else ([], []))
        tables = []
        if tabled.height:
            index = (*spec.index, "x") if tabled["x"].is_not_null().any() else spec.index
            tables.append(pivot_table(tabled, index=index, columns="metric", order=ORDER,
                                      labels=LABELS, headers=spec.headers, where=spec.id))
    except ValueError as exc:
        return replace(view, status="error", reason=str(exc))
    notes = tuple(dict.fromkeys(n for n in df["note"].to_list() if n))
    return replace(view, figures=tuple(figs), tables=tuple(tables),
                   data_tables=tuple(data_tables), notes=notes, grid=spec.kind == "wordcloud")
