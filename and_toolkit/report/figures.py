"""Figure renderers: plain data in, one inline SVG string out (no files, no pyplot, no globals).

Every series has its own colour (Okabe–Ito) and marker; legends sit outside the data area (one
shared legend under the panels), which :func:`svg.to_svg` checks when the figure is drawn. The
SVG plumbing (style, ids, determinism) lives in :mod:`and_toolkit.report.svg`.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from and_toolkit.report.svg import (
    PAPER_COLOR,
    color,
    finish_svg,
    marker,
    nan_array,
    style,
    to_svg,
)

__all__ = ["BarPanel", "DistPanel", "DumbbellPanel", "LinePanel", "LineSeries", "bar_chart",
           "distribution_plot", "dumbbell_plot", "finish_svg", "line_plot", "word_cloud"]

TARGET_SHADE = "#d9d9d9"
"""Background of the marked (target) category in a dumbbell plot."""
WORD_COLORS: tuple[str, ...] = ("#0072B2", "#A94800", "#00704F", "#9E4A7D", "#7A5A00")
"""Word-cloud colours: Okabe–Ito hues darkened to >= 5:1 on white (small words stay legible)."""
DROP_COLOR = "#B3261E"
"""Tick-label colour of the largest drops in a dumbbell plot (6.0:1 on white)."""


@dataclass(frozen=True)
class LineSeries:
    """One line: ``y`` (ours) over ``x``; optional ``err`` (± one standard deviation over seeds,
    drawn as error bars) and the paper's ``paper_y`` (drawn dashed in the same axes)."""

    label: str
    x: tuple[float, ...]
    y: tuple[float | None, ...]
    paper_y: tuple[float | None, ...] | None = None
    err: tuple[float | None, ...] | None = None


@dataclass(frozen=True)
class LinePanel:
    """One axes of a line plot (``y_label`` overrides the plot's y label)."""

    title: str
    series: tuple[LineSeries, ...]
    y_label: str = ""


@dataclass(frozen=True)
class BarPanel:
    """One axes of a horizontal bar chart: ``labels[i]`` has ``values[i]`` (paper: ``paper[i]``)."""

    title: str
    labels: tuple[str, ...]
    values: tuple[float | None, ...]
    paper: tuple[float | None, ...] | None = None


@dataclass(frozen=True, eq=False)
class DistPanel:
    """One axes of a distribution plot: one violin + box per ``(label, values)`` group."""

    title: str
    y_label: str
    groups: tuple[tuple[str, np.ndarray], ...]


@dataclass(frozen=True)
class DumbbellPanel:
    """Per category a start and an end value (e.g. logit before / after ablation).

    ``paper_start`` / ``paper_end`` map categories to the paper's values where known; ``marked``
    names categories to shade (e.g. the target class of Fig 10).
    """

    title: str
    categories: tuple[str, ...]
    start: tuple[float | None, ...]
    end: tuple[float | None, ...]
    start_label: str = "before"
    end_label: str = "after"
    paper_start: Mapping[str, float] | None = None
    paper_end: Mapping[str, float] | None = None
    marked: tuple[str, ...] = ()


def _grid(n: int, panel_w: float, panel_h: float, min_w: float = 6.4) -> tuple[Figure, list[Axes]]:
    ncols = min(max(n, 1), 3)
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(max(min_w, panel_w * ncols), panel_h * nrows + 0.5),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[: max(n, 1)]


def _legend(fig: Figure, handles: Sequence[object]) -> None:
    """One legend for the whole figure, under the panels (never over data)."""
    if handles:
        fig.legend(handles=list(handles), loc="outside lower center",
                   ncols=min(len(handles), 4))


def line_plot(panels: Sequence[LinePanel], *, x_label: str, y_label: str, fig_id: str,
              title: str = "") -> str:
    """Lines of ours (solid, markers, error bars where given) and the paper's (dashed).

    A label keeps its colour and marker in every panel, so one legend under the panels serves
    them all (small multiples).

    Args:
        panels: one or more axes; up to three per row.
        x_label: x-axis label with units.
        y_label: y-axis label with units.
        fig_id: page-unique id of the figure.
        title: accessible title.

    Returns:
        The inline SVG.
    """
    labels = list(dict.fromkeys(s.label for p in panels for s in p.series))
    slot = {lab: i for i, lab in enumerate(labels)}
    any_paper = False
    with style():
        fig, axes = _grid(len(panels), 4.2, 3.1)
        for ax, panel in zip(axes, panels, strict=False):
            for s in panel.series:
                i, x = slot[s.label], np.array(s.x, dtype=float)
                err = None if s.err is None else nan_array(s.err)
                ax.errorbar(x, nan_array(s.y), yerr=err, color=color(i), marker=marker(i),
                            ms=4, lw=1.6, capsize=2.5, elinewidth=1)
                if s.paper_y is not None and any(v is not None for v in s.paper_y):
                    any_paper = True
                    ax.plot(x, nan_array(s.paper_y), color=color(i), ls="--", lw=1.1,
                            marker=marker(i), ms=4, mfc="white")
            if all(float(v).is_integer() for s in panel.series for v in s.x):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(panel.title)
            ax.set_xlabel(x_label)
            ax.set_ylabel(panel.y_label or y_label)
        handles: list[object] = [Line2D([], [], color=color(slot[lab]), marker=marker(slot[lab]),
                                        ms=4, lw=1.6, label=lab) for lab in labels]
        if any_paper:
            handles.append(Line2D([], [], color="#555555", ls="--", marker="o", mfc="white",
                                  ms=4, label="paper (dashed, hollow)"))
        _legend(fig, handles)
        return to_svg(fig, fig_id, title)


def _bar_text(v: float) -> str:
    if not np.isfinite(v):
        return ""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def bar_chart(panels: Sequence[BarPanel], *, value_label: str, fig_id: str, title: str = "") -> str:
    """Horizontal bars (first label on top) with the paper's values as black ticks.

    Args:
        panels: one axes per panel; up to three per row.
        value_label: label of the value axis with units.
        fig_id: page-unique id of the figure.
        title: accessible title.

    Returns:
        The inline SVG.
    """
    n_bars = max((len(p.labels) for p in panels), default=1)
    any_paper = False
    with style():
        fig, axes = _grid(len(panels), 3.6, 0.9 + 0.2 * n_bars)
        for ax, panel in zip(axes, panels, strict=False):
            pos = np.arange(len(panel.labels))
            vals = nan_array(panel.values)
            bars = ax.barh(pos, np.nan_to_num(vals), color=color(0), height=0.7)
            ax.bar_label(bars, labels=[_bar_text(v) for v in vals], fontsize=7, padding=2)
            if panel.paper is not None and any(v is not None for v in panel.paper):
                any_paper = True
                ax.plot(nan_array(panel.paper), pos, ls="none", marker="|", ms=12, mew=2,
                        color=PAPER_COLOR)
            ax.set_yticks(pos, list(panel.labels))
            ax.invert_yaxis()
            ax.grid(axis="y", visible=False)
            ax.margins(x=0.15)
            ax.set_title(panel.title)
            ax.set_xlabel(value_label)
        handles: list[object] = [Patch(color=color(0), label="this run")]
        if any_paper:
            handles.append(Line2D([], [], ls="none", marker="|", ms=10, mew=2,
                                  color=PAPER_COLOR, label="paper"))
        _legend(fig, handles)
        return to_svg(fig, fig_id, title)


def distribution_plot(panels: Sequence[DistPanel], *, fig_id: str, title: str = "") -> str:
    """Violin (density) + box (quartiles, median) per group, one axes per panel.

    Groups with fewer than two distinct finite values get no violin; empty groups are labelled
    ``n=0``.

    Args:
        panels: one axes per panel; up to three per row.
        fig_id: page-unique id of the figure.
        title: accessible title.

    Returns:
        The inline SVG.
    """
    with style():
        fig, axes = _grid(len(panels), 3.6, 3.2)
        for ax, panel in zip(axes, panels, strict=False):
            data = [v[np.isfinite(v)] for _, v in panel.groups]
            pos = np.arange(1, len(data) + 1)
            for i, (p, d) in enumerate(zip(pos, data, strict=True)):
                if d.size >= 2 and np.ptp(d) > 0:
                    # the density of 2,000 evenly spaced quantiles: same shape, bounded cost
                    kde = np.quantile(d, np.linspace(0, 1, 2000)) if d.size > 2000 else d
                    parts = ax.violinplot([kde], positions=[p], showextrema=False, widths=0.8)
                    for body in parts["bodies"]:  # type: ignore[attr-defined]
                        body.set_facecolor(color(i))
                        body.set_alpha(0.35)
                if d.size:
                    ax.boxplot([d], positions=[p], widths=0.22, showfliers=False,
                               patch_artist=True, boxprops={"facecolor": "white"},
                               medianprops={"color": color(i), "lw": 2})
            ax.set_xticks(pos, [f"{lab}\n(n={d.size:,})" for (lab, _), d
                                in zip(panel.groups, data, strict=True)])
            ax.set_xlim(0.4, len(data) + 0.6)
            ax.grid(axis="x", visible=False)
            ax.set_title(panel.title)
            ax.set_ylabel(panel.y_label)
        return to_svg(fig, fig_id, title)


def _dumbbells(ax: Axes, cats: Sequence[str], start: np.ndarray, end: np.ndarray,
               hollow: bool) -> None:
    pos = np.arange(len(cats))
    ax.vlines(pos, start, end, color="#8a8a8a", lw=1.2)
    face = "white" if hollow else color(6)
    ax.plot(pos, start, ls="none", marker="o", ms=4.5, color=color(6), mfc=face)
    face = "white" if hollow else color(0)
    ax.plot(pos, end, ls="none", marker="v", ms=5.5, color=color(0), mfc=face)
    ax.set_xticks(pos, list(cats), rotation=90, fontsize=7)
    ax.grid(axis="x", visible=False)
    ax.set_xlim(-0.7, len(cats) - 0.3)


def dumbbell_plot(panel: DumbbellPanel, *, y_label: str, fig_id: str, highlight: int = 5,
                  title: str = "") -> str:
    """Start -> end value per category, categories sorted by change (largest drop first).

    The ``highlight`` categories with the largest drop get red bold tick labels; ``marked``
    categories are shaded. The paper's values, where given, get their own panel on the right
    (hollow markers, their own y scale).

    Args:
        panel: the data.
        y_label: value-axis label with units.
        fig_id: page-unique id of the figure.
        highlight: how many largest drops to colour red.
        title: accessible title.

    Returns:
        The inline SVG.
    """
    start, end = nan_array(panel.start), nan_array(panel.end)
    delta = np.where(np.isfinite(end - start), end - start, np.inf)
    idx = np.argsort(delta, kind="stable")
    cats = [panel.categories[i] for i in idx]
    paper = [c for c in panel.categories
             if c in (panel.paper_start or {}) or c in (panel.paper_end or {})]
    with style():
        width = max(6.4, 0.16 * len(cats) + 1.2) + (0.35 * len(paper) + 1.2 if paper else 0)
        fig = Figure(figsize=(width, 4.2), layout="constrained")
        ratios = [max(len(cats), 1), max(len(paper) + 2, 4)] if paper else [1]
        axes = fig.subplots(1, len(ratios), width_ratios=ratios, squeeze=False).ravel()
        ax = axes[0]
        _dumbbells(ax, cats, start[idx], end[idx], hollow=False)
        handles: list[object] = [
            Line2D([], [], ls="none", marker="o", ms=4.5, color=color(6), label=panel.start_label),
            Line2D([], [], ls="none", marker="v", ms=5.5, color=color(0), label=panel.end_label)]
        for i, c in enumerate(cats):
            if c in panel.marked:
                ax.axvspan(i - 0.5, i + 0.5, color=TARGET_SHADE, zorder=0, lw=0)
        if any(c in panel.marked for c in cats):
            handles.append(Patch(color=TARGET_SHADE, label="target class"))
        n_red = sum(1 for d in delta if np.isfinite(d) and d < 0)
        for i, tick in enumerate(ax.get_xticklabels()):
            if i < min(highlight, n_red):
                tick.set_color(DROP_COLOR)
                tick.set_fontweight("bold")
        ax.set_ylabel(y_label)
        ax.set_title(f"{panel.title} \u00b7 this run" if paper else panel.title)
        if paper:
            ps = nan_array([(panel.paper_start or {}).get(c) for c in paper])
            pe = nan_array([(panel.paper_end or {}).get(c) for c in paper])
            _dumbbells(axes[1], paper, ps, pe, hollow=True)
            axes[1].set_title("paper (read-off)")
            axes[1].set_ylabel(y_label)
            handles.append(Line2D([], [], ls="none", marker="o", mfc="white", color=color(0),
                                  label="paper (hollow)"))
        _legend(fig, handles)
        return to_svg(fig, fig_id, title)


def word_cloud(frequencies: Mapping[str, float], *, fig_id: str, title: str = "",
               width: int = 420, height: int = 220, seed: int = 0, max_words: int = 80) -> str:
    """A word cloud laid out by the ``wordcloud`` package, written as SVG ``<text>`` elements.

    The layout uses wordcloud's bundled DroidSansMono metrics; the SVG names that font with
    monospace fallbacks of near-identical advance width (DejaVu Sans Mono), so the page needs no
    embedded font. Colours depend on the word only (stable across runs).

    Args:
        frequencies: word -> weight; non-positive or non-finite weights are ignored.
        fig_id: page-unique id of the figure.
        title: accessible title.
        width: canvas width in px.
        height: canvas height in px.
        seed: layout seed.
        max_words: at most this many (heaviest) words.

    Returns:
        The inline SVG (a "no words" placeholder when nothing is left to draw).
    """
    from wordcloud import WordCloud

    words = {w: float(f) for w, f in frequencies.items()
             if w.strip() and math.isfinite(f) and f > 0}
    if not words:
        raw = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
               f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#595959">'
               "no words</text></svg>")
        return finish_svg(raw, fig_id, title)

    def word_color(word: str, **_: object) -> str:
        return WORD_COLORS[zlib.crc32(word.encode("utf-8")) % len(WORD_COLORS)]

    wc = WordCloud(width=width, height=height, background_color="white", random_state=seed,
                   max_words=max_words, color_func=word_color, prefer_horizontal=0.9, margin=3,
                   max_font_size=height // 3)
    wc.generate_from_frequencies(words)
    svg = wc.to_svg()
    open_tag = re.match(r"<svg\b[^>]*>", svg)
    assert open_tag is not None
    body = re.sub(r"<style>.*?</style>", "", svg[open_tag.end():], flags=re.S)
    body = body.replace("</svg>", "").replace('width="100%" height="100%"',
                                              f'width="{width}" height="{height}"')
    raw = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}"><g font-family="\'Droid Sans Mono\', '
           f"'DejaVu Sans Mono', monospace\">{body.strip()}</g></svg>")
    return finish_svg(raw, fig_id, title)
