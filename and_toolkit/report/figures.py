"""Figure renderers: plain data in, one inline SVG string out (no files, no pyplot, no globals).

matplotlib runs through :class:`matplotlib.figure.Figure` with the SVG backend inside an
``rc_context`` that fixes ``svg.hashsalt``, keeps text as ``<text>`` (escaped by matplotlib) and
drops the date metadata, so the same data always gives byte-identical SVG. Element ids are
prefixed with the figure id, so several figures can live in one HTML page.
"""

from __future__ import annotations

import io
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from xml.sax.saxutils import escape

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

RC: dict[str, object] = {
    "svg.hashsalt": "and-toolkit-report",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e6ea",
    "grid.linewidth": 0.7,
    "axes.edgecolor": "#8a929b",
    "axes.titlesize": 10.0,
    "axes.titleweight": "bold",
    "legend.fontsize": 7.5,
    "legend.frameon": False,
}
"""matplotlib settings of every report figure."""

PALETTE: tuple[str, ...] = ("#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e",
                            "#a6761d", "#e6ab02", "#17becf", "#666666")
"""Series colours (colour-blind-friendly, in series order)."""

_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_TAG = re.compile(r"<[^<>]+>")
_ID_ATTR = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(href="#|url\(#)([^")]+)')


@dataclass(frozen=True)
class LineSeries:
    """One line: ``y`` (ours) over ``x``, optionally the paper's ``paper_y`` drawn dashed."""

    label: str
    x: tuple[float, ...]
    y: tuple[float | None, ...]
    paper_y: tuple[float | None, ...] | None = None


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

    ``paper_start`` / ``paper_end`` map categories to the paper's values where known.
    """

    title: str
    categories: tuple[str, ...]
    start: tuple[float | None, ...]
    end: tuple[float | None, ...]
    start_label: str = "before"
    end_label: str = "after"
    paper_start: Mapping[str, float] | None = None
    paper_end: Mapping[str, float] | None = None


def _style() -> AbstractContextManager[None]:
    """The report's matplotlib settings, scoped to a ``with`` block."""
    return matplotlib.rc_context(RC)  # type: ignore[arg-type]


def _nan(values: Sequence[float | None]) -> np.ndarray:
    arr = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    arr[~np.isfinite(arr)] = math.nan
    return arr


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def finish_svg(raw: str, fig_id: str, title: str) -> str:
    """Make a standalone SVG document inline-ready.

    Drops the XML prolog / DOCTYPE and matplotlib's global ``<style>``, prefixes every id (and
    reference to it) with ``fig_id``, replaces fixed width / height by a responsive max-width and
    adds an escaped ``<title>``.

    Args:
        raw: the SVG document.
        fig_id: a page-unique id (letters, digits, ``-``, ``_``).
        title: accessible title (untrusted text; escaped here).

    Returns:
        The ``<svg ...>...</svg>`` element as a string.

    Raises:
        ValueError: if ``fig_id`` has other characters or ``raw`` holds no ``<svg`` element.
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", fig_id):
        raise ValueError(f"fig_id: {fig_id!r} must match [A-Za-z][A-Za-z0-9_-]*")
    start = raw.find("<svg")
    if start < 0:
        raise ValueError(f"figure {fig_id}: renderer produced no <svg> element")
    svg = re.sub(r"<style[^>]*>.*?</style>", "", raw[start:], flags=re.S)

    def fix_tag(m: re.Match[str]) -> str:
        tag = _ID_ATTR.sub(lambda a: f'id="{fig_id}-{a.group(1)}"', m.group(0))
        return _REF.sub(lambda a: f"{a.group(1)}{fig_id}-{a.group(2)}", tag)

    svg = _TAG.sub(fix_tag, svg)
    root = re.match(r"<svg\b[^>]*>", svg)
    assert root is not None
    head = root.group(0)
    width = re.search(r'\bwidth="([\d.]+)(pt|px)?"', head)
    max_w = ""
    if width:
        px = float(width.group(1)) * (4 / 3 if width.group(2) == "pt" else 1)
        max_w = f' style="max-width:{px:.0f}px"'
    head = re.sub(r'\s(width|height)="[^"]*"', "", head)
    head = head[:-1] + f' id="{fig_id}" class="chart" role="img"{max_w}>'
    return f"{head}<title>{escape(title)}</title>{svg[root.end():].strip()}"


def _to_svg(fig: Figure, fig_id: str, title: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=_METADATA)
    return finish_svg(buf.getvalue(), fig_id, title)


def _grid(n: int, panel_w: float, panel_h: float, min_w: float = 6.4) -> tuple[Figure, list[Axes]]:
    ncols = min(max(n, 1), 3)
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(max(min_w, panel_w * ncols), panel_h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[: max(n, 1)]


def line_plot(panels: Sequence[LinePanel], *, x_label: str, y_label: str, fig_id: str,
              title: str = "") -> str:
    """Lines of ours (solid, markers) and the paper's values (dashed, same colour).

    Args:
        panels: one or more axes; up to three per row.
        x_label: x-axis label with units.
        y_label: y-axis label with units.
        fig_id: page-unique id of the figure.
        title: accessible title.

    Returns:
        The inline SVG.
    """
    with _style():
        fig, axes = _grid(len(panels), 4.2, 3.1)
        for ax, panel in zip(axes, panels, strict=False):
            any_paper = False
            for i, s in enumerate(panel.series):
                x = np.array(s.x, dtype=float)
                ax.plot(x, _nan(s.y), color=_color(i), marker="o", ms=3.5, lw=1.6, label=s.label)
                if s.paper_y is not None and any(v is not None for v in s.paper_y):
                    any_paper = True
                    ax.plot(x, _nan(s.paper_y), color=_color(i), ls="--", lw=1.1, alpha=0.8,
                            marker="x", ms=3)
            handles, _ = ax.get_legend_handles_labels()
            if any_paper:
                handles.append(Line2D([], [], color="#555555", ls="--", marker="x", ms=3,
                                      label="paper (dashed)"))
            if handles:
                ax.legend(handles=handles, loc="best")
            ax.set_title(panel.title)
            ax.set_xlabel(x_label)
            ax.set_ylabel(panel.y_label or y_label)
        return _to_svg(fig, fig_id, title)


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
    with _style():
        fig, axes = _grid(len(panels), 3.6, 0.9 + 0.2 * n_bars)
        for ax, panel in zip(axes, panels, strict=False):
            pos = np.arange(len(panel.labels))
            vals = _nan(panel.values)
            bars = ax.barh(pos, np.nan_to_num(vals), color=_color(0), height=0.7, label="ours")
            ax.bar_label(bars, labels=[f"{v:,.0f}" if np.isfinite(v) and abs(v) >= 100
                                       else ("" if not np.isfinite(v) else f"{v:.3g}")
                                       for v in vals], fontsize=7, padding=2)
            if panel.paper is not None and any(v is not None for v in panel.paper):
                ax.plot(_nan(panel.paper), pos, ls="none", marker="|", ms=12, mew=2,
                        color="#222222", label="paper")
                ax.legend(loc="lower right")
            ax.set_yticks(pos, list(panel.labels))
            ax.invert_yaxis()
            ax.grid(axis="y", visible=False)
            ax.margins(x=0.15)
            ax.set_title(panel.title)
            ax.set_xlabel(value_label)
        return _to_svg(fig, fig_id, title)


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
    with _style():
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
                        body.set_facecolor(_color(i))
                        body.set_alpha(0.35)
                if d.size:
                    ax.boxplot([d], positions=[p], widths=0.22, showfliers=False,
                               patch_artist=True, boxprops={"facecolor": "white"},
                               medianprops={"color": _color(i), "lw": 2})
            ax.set_xticks(pos, [f"{lab}\n(n={d.size:,})" for (lab, _), d
                                in zip(panel.groups, data, strict=True)])
            ax.set_xlim(0.4, len(data) + 0.6)
            ax.grid(axis="x", visible=False)
            ax.set_title(panel.title)
            ax.set_ylabel(panel.y_label)
        return _to_svg(fig, fig_id, title)


def dumbbell_plot(panel: DumbbellPanel, *, y_label: str, fig_id: str, highlight: int = 5,
                  title: str = "") -> str:
    """Start -> end value per category, categories sorted by change (largest drop first).

    The ``highlight`` categories with the largest drop get red tick labels; the paper's values,
    where given, are hollow markers.

    Args:
        panel: the data.
        y_label: value-axis label with units.
        fig_id: page-unique id of the figure.
        highlight: how many largest drops to colour red.
        title: accessible title.

    Returns:
        The inline SVG.
    """
    start, end = _nan(panel.start), _nan(panel.end)
    delta = np.where(np.isfinite(end - start), end - start, np.inf)
    idx = np.argsort(delta, kind="stable")
    cats = [panel.categories[i] for i in idx]
    with _style():
        fig = Figure(figsize=(max(6.4, 0.16 * len(cats) + 1.2), 3.8), layout="constrained")
        ax = fig.add_subplot()
        pos = np.arange(len(cats))
        ax.vlines(pos, start[idx], end[idx], color="#9aa3ad", lw=1.2)
        ax.plot(pos, start[idx], ls="none", marker="o", ms=4, color="#7f8790",
                label=panel.start_label)
        ax.plot(pos, end[idx], ls="none", marker="v", ms=5, color=_color(0), label=panel.end_label)
        for mapping, marker, lab in ((panel.paper_start, "o", f"paper {panel.start_label}"),
                                     (panel.paper_end, "v", f"paper {panel.end_label}")):
            if mapping:
                ys = _nan([mapping.get(c) for c in cats])
                ax.plot(pos, ys, ls="none", marker=marker, ms=7, mfc="none", mec="#c0392b",
                        label=lab)
        ax.set_xticks(pos, cats, rotation=90, fontsize=7)
        n_red = sum(1 for d in delta if np.isfinite(d) and d < 0)
        for i, tick in enumerate(ax.get_xticklabels()):
            if i < min(highlight, n_red):
                tick.set_color("#c0392b")
                tick.set_fontweight("bold")
        ax.grid(axis="x", visible=False)
        ax.set_xlim(-0.7, len(cats) - 0.3)
        ax.set_ylabel(y_label)
        ax.set_title(panel.title)
        ax.legend(loc="lower right", ncols=2)
        return _to_svg(fig, fig_id, title)


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
               f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#777">'
               "no words</text></svg>")
        return finish_svg(raw, fig_id, title)

    def color(word: str, **_: object) -> str:
        return PALETTE[zlib.crc32(word.encode("utf-8")) % 8]

    wc = WordCloud(width=width, height=height, background_color="white", random_state=seed,
                   max_words=max_words, color_func=color, prefer_horizontal=0.9, margin=3,
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
