"""SVG plumbing of the report's figures: style, palette, markers, inline-ready SVG, layout checks.

matplotlib runs through :class:`matplotlib.figure.Figure` with the SVG backend inside an
``rc_context`` that fixes ``svg.hashsalt``, keeps text as ``<text>`` (escaped by matplotlib) and
drops the date metadata, so the same data always gives byte-identical SVG. Element ids are
prefixed with the figure id, so several figures can live in one HTML page. Every figure is
laid out once and drawn once (:func:`lay_out_for_svg`) and checked when it is rendered: no
legend may overlap the data area of any axes.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from xml.sax.saxutils import escape

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

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

PALETTE: tuple[str, ...] = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                            "#000000", "#7F7F7F")
"""Series colours: the Okabe\u2013Ito colour-blind-safe palette (its yellow dropped: too light on
white), in series order."""
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X")
"""Series markers, paired with :data:`PALETTE` so series differ without colour too (7 markers
against 8 colours: the first 56 series all get a distinct colour-marker pair)."""
PAPER_COLOR = "#000000"
"""Colour of the paper's values where they share an axes with ours."""

_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_TAG = re.compile(r"<[^<>]+>")
_ID_ATTR = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(href="#|url\(#)([^")]+)')


def style() -> AbstractContextManager[None]:
    """The report's matplotlib settings, scoped to a ``with`` block."""
    return matplotlib.rc_context(RC)  # type: ignore[arg-type]


def nan_array(values: Sequence[float | None]) -> np.ndarray:
    arr = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    arr[~np.isfinite(arr)] = math.nan
    return arr


def color(i: int) -> str:
    """The ``i``-th series colour (cycling)."""
    return PALETTE[i % len(PALETTE)]


def marker(i: int) -> str:
    """The ``i``-th series marker (cycling)."""
    return MARKERS[i % len(MARKERS)]


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


def legend_overlaps(fig: Figure, drawn: bool = False) -> list[str]:
    """Legends whose box overlaps the data area of a visible axes, after the figure is drawn.

    Args:
        fig: the figure.
        drawn: True when the figure was just drawn (e.g. saved), so its layout engine has placed
            the axes and legends: they are measured as they are. False draws it first with Agg
            (its layout engine runs then).

    Returns:
        One message per (legend, axes) overlap; empty when every legend sits outside the data.
    """
    renderer = FigureCanvasAgg(fig).get_renderer()
    if not drawn:
        fig.draw(renderer)
    legends = list(fig.legends) + [leg for a in fig.axes if (leg := a.get_legend()) is not None]
    out = []
    for i, leg in enumerate(legends):
        box = leg.get_window_extent(renderer)
        for j, ax in enumerate(fig.axes):
            if ax.get_visible() and box.overlaps(ax.get_window_extent(renderer)):
                out.append(f"legend {i} overlaps axes {j} ({ax.get_title() or 'untitled'})")
    return out


def lay_out_for_svg(fig: Figure) -> None:
    """Run ``fig``'s layout engine once as ``savefig(format="svg")`` would, then detach it.

    With a layout engine attached, ``savefig`` draws the figure twice: a first, draw-disabled
    pass only so that ``Figure.draw`` runs the engine, then the real pass. Running the engine
    here under the same conditions as that first pass (an SVG canvas, hence the SVG renderer's
    text metrics, at the 72 dpi ``print_svg`` draws at) and detaching it leaves ``savefig`` one
    draw, with the same axes / legend positions, so the SVG is byte-identical. ``fig.dpi`` is
    restored afterwards (``savefig`` restores it too). No-op for a figure without an engine;
    like ``Figure.draw``, the engine only runs when the figure has axes.

    Raises:
        ValueError: from the engine (``Figure.draw`` would swallow it and save the figure
            without a layout).
        RuntimeError: if the engine cannot be detached (rc ``figure.autolayout`` or
            ``figure.constrained_layout.use`` re-attach one); savefig would lay out twice.
    """
    engine = fig.get_layout_engine()
    if engine is None:
        return
    if fig.axes:
        FigureCanvasSVG(fig)  # the renderer the engine asks the figure for is then the SVG one
        dpi = fig.dpi
        fig.dpi = 72  # print_svg's dpi: point = pixel, as in savefig's layout pass
        try:
            engine.execute(fig)
        finally:
            fig.dpi = dpi
    fig.set_layout_engine(None)
    if fig.get_layout_engine() is not None:
        raise RuntimeError("figure layout engine could not be detached after the layout "
                           "(rc figure.autolayout / figure.constrained_layout.use is set)")


def to_svg(fig: Figure, fig_id: str, title: str) -> str:
    """Draw ``fig`` as inline SVG (one draw: see :func:`lay_out_for_svg`, which detaches its
    layout engine), refusing a layout where a legend covers data.

    Raises:
        ValueError: naming the figure when a legend overlaps an axes' data area.
    """
    lay_out_for_svg(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=_METADATA)
    if problems := legend_overlaps(fig, drawn=True):  # measured in the layout just saved
        raise ValueError(f"figure {fig_id}: " + "; ".join(problems))
    return finish_svg(buf.getvalue(), fig_id, title)


