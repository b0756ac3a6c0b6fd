"""Figure renderers: valid, inline-ready, escaped and byte-identical SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

import numpy as np
import pytest

from and_toolkit.report import figures as F

SVG = "{http://www.w3.org/2000/svg}"
XSS = "<img src=x onerror=alert(1)>"


def _line(fig_id: str) -> str:
    return F.line_plot(
        [F.LinePanel("K=5", (F.LineSeries(XSS, (0.0, 2.0, 4.0), (0.95, None, 0.7),
                                          (0.95, 0.9, float("nan"))),
                             F.LineSeries("nouns", (0.0, 2.0, 4.0), (0.9, 0.8, 0.6)))),
         F.LinePanel("K=10", (F.LineSeries("a", (1.0, 2.0), (1.0, float("inf"))),), "pct")],
        x_label="% ablated", y_label="accuracy", fig_id=fig_id, title="Figure 4a")


def _bar(fig_id: str) -> str:
    return F.bar_chart([F.BarPanel("AST", ("loud", XSS, "clear"), (15500.0, 120.5, None),
                                   (15000.0, None, None)),
                        F.BarPanel("BEATs", ("loud",), (3.0,))],
                       value_label="neurons", fig_id=fig_id, title="Figure 9")


def _dist(fig_id: str) -> str:
    rng = np.random.default_rng(0)
    return F.distribution_plot(
        [F.DistPanel("loud", "amplitude", (("with", rng.normal(1, 1, 5000)),
                                           ("without", rng.normal(0, 1, 300)))),
         F.DistPanel(XSS, "mdf (Hz)", (("with", np.array([1.0])), ("without", np.array([]))))],
        fig_id=fig_id, title="Figure 8")


def _dumbbell(fig_id: str) -> str:
    panel = F.DumbbellPanel("AST", ("dog", XSS, "rain", "water_drops"), (-1.0, -0.5, -2.0, -0.8),
                            (-5.0, -9.0, None, -10.8), paper_end={"water_drops": -10.8})
    return F.dumbbell_plot(panel, y_label="logit", fig_id=fig_id, highlight=2, title="Figure 10")


def _cloud(fig_id: str) -> str:
    return F.word_cloud({"bell": 10.0, "ringing": 7.0, XSS: 5.0, "a&b": 3.0, "zero": 0.0,
                         "nan": float("nan")}, fig_id=fig_id, title="cluster <1>")


RENDERERS: dict[str, Callable[[str], str]] = {
    "line": _line, "bar": _bar, "distribution": _dist, "dumbbell": _dumbbell, "wordcloud": _cloud,
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {name: fn(f"f-{name}") for name, fn in RENDERERS.items()}


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_renderer_returns_one_valid_inline_svg(rendered: dict[str, str], name: str) -> None:
    svg = rendered[name]
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<style" not in svg
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("id") == f"f-{name}" and root.get("class") == "chart"
    assert root.get("viewBox") and root.get("width") is None and root.get("height") is None
    ids = [i for el in root.iter() if (i := el.get("id"))]
    assert len(ids) == len(set(ids))
    assert all(i == f"f-{name}" or i.startswith(f"f-{name}-") for i in ids)
    for el in root.iter():
        for attr, value in el.attrib.items():
            if attr.endswith("href"):
                assert value.startswith(f"#f-{name}-")


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_svg_text_is_escaped(rendered: dict[str, str], name: str) -> None:
    svg = rendered[name]
    assert XSS not in svg
    root = ET.fromstring(svg)
    assert all(el.tag not in (f"{SVG}script", f"{SVG}img", f"{SVG}foreignObject")
               for el in root.iter())
    assert not any(a.lower().startswith("on") for el in root.iter() for a in el.attrib)
    texts = [t for el in root.iter() if el.tag in (f"{SVG}text", f"{SVG}title")
             for t in [el.text or ""]]
    assert XSS in texts  # shown as inert text (a label, tick or panel title)


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_rerender_is_byte_identical(rendered: dict[str, str], name: str) -> None:
    assert RENDERERS[name](f"f-{name}") == rendered[name]


MPL_RENDERERS = sorted(set(RENDERERS) - {"wordcloud"})


@pytest.mark.parametrize("name", MPL_RENDERERS)
def test_layout_once_gives_the_svg_of_savefigs_own_layout_pass(
        rendered: dict[str, str], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from and_toolkit.report import svg

    # without lay_out_for_svg, savefig runs the constrained layout in its own (second) draw
    monkeypatch.setattr(svg, "lay_out_for_svg", lambda fig: None)
    assert RENDERERS[name](f"f-{name}") == rendered[name]


@pytest.mark.parametrize("name", MPL_RENDERERS)
def test_each_figure_is_drawn_once(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    draws: list[Figure] = []
    real_draw = Figure.draw

    def counting_draw(self: Figure, renderer: object) -> None:
        draws.append(self)
        real_draw(self, renderer)

    monkeypatch.setattr(Figure, "draw", counting_draw)
    RENDERERS[name](f"f-{name}")
    assert len(draws) == 1


def test_svg_has_no_date_or_creator_metadata(rendered: dict[str, str]) -> None:
    for svg in rendered.values():
        assert "<metadata" not in svg and "dc:date" not in svg


def test_word_cloud_skips_non_positive_weights_and_handles_empty_input(
        rendered: dict[str, str]) -> None:
    texts = [el.text for el in ET.fromstring(rendered["wordcloud"]).iter(f"{SVG}text")]
    assert "zero" not in texts and "nan" not in texts and "a&b" in texts
    empty = F.word_cloud({"x": 0.0}, fig_id="empty")
    assert [el.text for el in ET.fromstring(empty).iter(f"{SVG}text")] == ["no words"]


def test_dumbbell_sorts_by_drop_and_highlights_largest(rendered: dict[str, str]) -> None:
    root = ET.fromstring(rendered["dumbbell"])
    labels = [el for el in root.iter(f"{SVG}text")
              if el.text in ("dog", XSS, "rain", "water_drops")]
    # this run's axes first; then the paper's own panel with its one category
    assert [el.text for el in labels] == ["water_drops", XSS, "dog", "rain", "water_drops"]
    red = [el.text for el in labels if F.DROP_COLOR.lower() in (el.get("style") or "").lower()]
    assert red == ["water_drops", XSS]
    assert "paper (read-off)" in [el.text for el in root.iter(f"{SVG}text")]


def test_dumbbell_shades_the_marked_category() -> None:
    panel = F.DumbbellPanel("AST", ("dog", "rain"), (1.0, 2.0), (0.0, 2.5), marked=("rain",))
    svg = F.dumbbell_plot(panel, y_label="logit", fig_id="m", title="t")
    assert "target class" in svg and F.TARGET_SHADE in svg
    plain = F.dumbbell_plot(F.DumbbellPanel("AST", ("dog", "rain"), (1.0, 2.0), (0.0, 2.5)),
                            y_label="logit", fig_id="m", title="t")
    assert "target class" not in plain and F.TARGET_SHADE not in plain


def test_line_plot_draws_error_bars_and_one_shared_legend() -> None:
    series = F.LineSeries("random", (0.0, 2.0), (0.9, 0.8), err=(0.0, 0.05))
    panels = [F.LinePanel(f"K={k}", (series, F.LineSeries("nouns", (0.0, 2.0), (0.9, 0.7))))
              for k in (5, 10, 20)]
    svg = F.line_plot(panels, x_label="x", y_label="y", fig_id="e", title="t")
    texts = [el.text for el in ET.fromstring(svg).iter(f"{SVG}text")]
    assert texts.count("random") == 1 and texts.count("nouns") == 1  # one legend for 3 panels
    no_err = F.line_plot([F.LinePanel("a", (F.LineSeries("random", (0.0, 2.0), (0.9, 0.8)),))],
                         x_label="x", y_label="y", fig_id="e", title="t")
    assert svg.count("<path") > no_err.count("<path")  # the error bar segments and caps


def test_legend_inside_the_data_area_is_refused() -> None:
    from matplotlib.figure import Figure

    from and_toolkit.report.svg import legend_overlaps, to_svg

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a long legend label")
    ax.legend(loc="center")
    assert legend_overlaps(fig)
    with pytest.raises(ValueError, match="figure bad: legend 0 overlaps axes 0"):
        to_svg(fig, "bad", "t")
    fig2 = Figure(figsize=(4, 3), layout="constrained")
    fig2.add_subplot().plot([0, 1], [0, 1], label="a")
    fig2.legend(loc="outside lower center")
    assert legend_overlaps(fig2) == []
    fig3 = Figure(figsize=(4, 3), layout="constrained")  # measured in the layout savefig made
    fig3.add_subplot().plot([0, 1], [0, 1], label="a")
    fig3.legend(loc="outside lower center")
    assert to_svg(fig3, "good", "t").startswith("<svg")
    fig4 = Figure(figsize=(4, 3), layout="constrained")
    fig4.add_subplot().plot([0, 1], [0, 1], label="a long legend label")
    fig4.axes[0].legend(loc="center")
    with pytest.raises(ValueError, match="figure bad: legend 0 overlaps axes 0"):
        to_svg(fig4, "bad", "t")


def test_finish_svg_rejects_bad_ids_and_non_svg() -> None:
    with pytest.raises(ValueError, match="fig_id"):
        F.finish_svg("<svg></svg>", 'x" onload="alert(1)', "t")
    with pytest.raises(ValueError, match="no <svg>"):
        F.finish_svg("<html/>", "ok", "t")


def test_finish_svg_prefixes_ids_but_not_text() -> None:
    raw = ('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10pt" '
           'height="5pt"><style>*{a:b}</style><defs><path id="p1"/></defs>'
           '<use href="#p1"/><g clip-path="url(#p1)"><text>id="p1" url(#p1)</text></g></svg>')
    out = F.finish_svg(raw, "fx", "T")
    assert '<path id="fx-p1"/>' in out and 'href="#fx-p1"' in out and "url(#fx-p1)" in out
    assert '<text>id="p1" url(#p1)</text>' in out
    assert 'style="max-width:13px"' in out and "<title>T</title>" in out


def test_word_cloud_colours_meet_aa_contrast_on_white() -> None:
    def luminance(hex_colour: str) -> float:
        c = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    assert all(1.05 / (luminance(c) + 0.05) >= 4.5 for c in F.WORD_COLORS)
    svg = _cloud("wc")
    used = set(re.findall(r'fill="(#[0-9A-Fa-f]{6})"', svg)) | set(
        re.findall(r"fill:(#[0-9A-Fa-f]{6})", svg))
    assert used and used <= {c.lower() for c in F.WORD_COLORS} | set(F.WORD_COLORS)


def test_every_figure_has_an_accessible_title(rendered: dict[str, str]) -> None:
    for name, svg in rendered.items():
        root = ET.fromstring(svg)
        title = root.find(f"{SVG}title")
        assert root.get("role") == "img" and title is not None and title.text, name
