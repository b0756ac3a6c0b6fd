"""The report in a real headless Chromium: DOM, console, screenshot (marker ``browser``).

Chromium is installed by the CI scripts (Debian ``chromium``); without it on PATH these tests skip.
The page is served from 127.0.0.1 on an ephemeral port by ``http.server`` in a thread. Set
``AND_REPORT_SCREENSHOT=/path/report.png`` to keep the screenshot.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from and_toolkit.report.context import ReportContext
from and_toolkit.report.render import render_report
from and_toolkit.report.sections import SECTIONS

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("chromium is not on PATH (CI installs Debian's chromium; locally: "
                "apt-get install -y chromium)", allow_module_level=True)

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")
CONSOLE = re.compile(r":CONSOLE|Uncaught")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sample_results: dict[str, pl.DataFrame],
           sample_context: ReportContext) -> Iterator[tuple[str, Path]]:
    """The sample report (with XSS captions) and a console control page, served over HTTP."""
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(render_report(sample_results, sample_context),
                                     encoding="utf-8")
    (root / "control.html").write_text(
        "<!DOCTYPE html><html><body><p>control</p><script>console.error('control-marker');"
        "</script></body></html>", encoding="utf-8")
    (root / "probed.html").write_text(_with_probe(render_report(sample_results, sample_context)),
                                      encoding="utf-8")
    (root / "probe-control.html").write_text(_with_probe(_bad_page()), encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


PROBE = (Path(__file__).parent / "layout_probe.js").read_text("utf-8")
WIDTH = 1200
"""Viewport width (CSS px) at which the main column must not scroll horizontally."""
AA = 4.5
"""WCAG 2 AA minimum contrast of normal text."""


def _with_probe(html: str) -> str:
    """The page with the layout probe appended (it writes JSON into <pre id="probe-out">)."""
    return html.replace("</body>", f"<script>{PROBE}</script></body>")


def _bad_page() -> str:
    """A control page breaking every rule the probe checks: low contrast, a main column wider
    than the viewport, and a legend drawn inside the data area (bypassing the render check)."""
    from matplotlib.figure import Figure

    from and_toolkit.report.svg import finish_svg

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a legend in the middle")
    ax.legend(loc="center")
    import io

    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    svg = finish_svg(buf.getvalue(), "bad", "bad")
    return ("<!DOCTYPE html><html><body><main><p style='color:#aaaaaa'>too light</p>"
            f"<div style='width:2000px'>too wide</div>{svg}<table style='table-layout:fixed;"
            "width:100px'><tr><td style='white-space:nowrap'>a cell far too long for its column"
            "</td></tr></table></main></body></html>")


def _luminance(rgb: list[float]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: list[float], bg: list[float]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours (0-255 channels)."""
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _intersects(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def probe(url: str, tmp_path: Path) -> dict[str, Any]:
    """Load ``url`` at WIDTH px in Chromium and return the probe's measurements."""
    proc = chromium(tmp_path, f"--window-size={WIDTH},900", "--dump-dom", url)
    m = re.search(r'<pre id="probe-out">(.*?)</pre>', proc.stdout, re.S)
    assert m, "the layout probe wrote nothing:\n" + proc.stdout[-1000:]
    data: dict[str, Any] = json.loads(html.unescape(m.group(1)))
    assert data["innerWidth"] == WIDTH
    return data


def problems(data: dict[str, Any]) -> dict[str, list[str]]:
    """Every broken rule in a probe's measurements, by rule."""
    low = [f"{t['el']} {t['text']!r}: {contrast(t['fg'], t['bg']):.2f}:1"
           for t in data["text"] if contrast(t["fg"], t["bg"]) < AA]
    main = data["main"]
    wide = []
    if main["scrollWidth"] > main["clientWidth"] or main["right"] > WIDTH:
        wide.append(f"main: scrollWidth {main['scrollWidth']} > clientWidth "
                    f"{main['clientWidth']} or right edge {main['right']} > {WIDTH}")
    if data["docScrollWidth"] > WIDTH:
        wide.append(f"page scrolls horizontally: {data['docScrollWidth']} > {WIDTH}")
    overlaps = [f"{lg['legend']} over {a['axes']}" for lg in data["legends"]
                for a in lg["areas"] if _intersects(lg["box"], a["box"])]
    return {"contrast": low, "overflow": wide + data["cells"], "legend": overlaps}


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a fresh profile; fails the test on a non-zero exit."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{proc.stderr[-2000:]}"
    return proc


def test_dom_has_every_section_and_figure_and_inert_xss(served: tuple[str, Path],
                                                        tmp_path: Path) -> None:
    url, _ = served
    proc = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom",
                    f"{url}/index.html")
    dom = proc.stdout
    for spec in SECTIONS:
        assert f'id="{spec.id}"' in dom, spec.id
    assert 'id="findings"' in dom and 'id="provenance"' in dom
    figure_ids = re.findall(r'<figure class="chart-box" id="([^"]+)-box">\s*(?:<figcaption>'
                            r'[^<]*</figcaption>)?<svg[^>]* id="\1"', dom)
    assert {f.split("-")[0] for f in figure_ids} == {
        "fig10", "fig3", "fig9", "fig4a", "fig4b", "fig5", "fig6", "fig11_13", "fig8", "table8"}
    # the captions are text in the live DOM: no script element, no img element with onerror
    assert "<script" not in dom
    assert not re.search(r"<img\b", dom)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom
    console = [line for line in proc.stderr.splitlines() if CONSOLE.search(line)]
    assert console == [], "console messages:\n" + "\n".join(console)


def test_console_capture_sees_a_deliberate_error(served: tuple[str, Path],
                                                 tmp_path: Path) -> None:
    """Control: the console check above would catch an error (so its silence means something)."""
    url, _ = served
    proc = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom",
                    f"{url}/control.html")
    assert any(CONSOLE.search(line) and "control-marker" in line
               for line in proc.stderr.splitlines()), proc.stderr[-2000:]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot_is_non_trivial(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", f"{url}/index.html")
    data = shot.read_bytes()
    keep = os.environ.get("AND_REPORT_SCREENSHOT")
    if keep:  # e.g. a CI artifact path, to look at the page
        shutil.copyfile(shot, keep)
    assert _png_size(data) == (1280, 4000)
    assert len(data) > 100_000  # text, tables and figures (a blank page compresses to ~20 kB)
    try:
        from PIL import Image
    except ImportError:  # pillow ships with matplotlib; keep the test meaningful without it
        return
    with Image.open(shot) as im:
        colours = im.convert("RGB").resize((320, 1000)).getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 200


def test_rendered_styles_contrast_layout_and_every_paper_item(served: tuple[str, Path],
                                                              tmp_path: Path) -> None:
    """At 1200 px: every text/background pair >= 4.5:1 (WCAG AA, from the computed styles), no
    horizontal overflow of the main column nor text spilling out of a table cell, no legend over
    a data area, every paper item's id."""
    url, _ = served
    data = probe(f"{url}/probed.html", tmp_path)
    assert len(data["text"]) > 500 and data["legends"]  # the probe saw the page and its legends
    found = problems(data)
    assert found == {"contrast": [], "overflow": [], "legend": []}, found
    ids = set(data["ids"])
    assert {"setup", "findings", "provenance", *(s.id for s in SECTIONS)} <= ids


def test_layout_probe_catches_each_broken_rule(served: tuple[str, Path], tmp_path: Path) -> None:
    """Control: a page breaking each rule is caught (so the silence above means something)."""
    url, _ = served
    found = problems(probe(f"{url}/probe-control.html", tmp_path))
    assert any("too light" in p for p in found["contrast"]), found
    assert any("too wide" in p or "scrollWidth" in p for p in found["overflow"]), found
    assert any(p.startswith("td a cell far too long") for p in found["overflow"]), found
    assert found["legend"] == ["bad-legend_1 over bad-axes_1"], found


COMMITTED = sorted((Path(__file__).resolve().parents[2] / "reports").glob("*/index.html"))
"""The reports committed to the repository (reports/<run>/index.html)."""


@pytest.mark.parametrize("page", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_committed_reports_pass_the_layout_probe(page: Path, tmp_path: Path) -> None:
    """The committed pages themselves (not only the sample): contrast, no horizontal overflow
    of the main column, no legend over a data area, every paper item's section id."""
    probed = tmp_path / "probed.html"
    probed.write_text(_with_probe(page.read_text("utf-8")), "utf-8")
    data = probe(probed.as_uri(), tmp_path)
    assert len(data["text"]) > 500 and data["legends"]  # the probe saw the page and its legends
    found = problems(data)
    assert found == {"contrast": [], "overflow": [], "legend": []}, found
    assert {"setup", "findings", "provenance", *(s.id for s in SECTIONS)} <= set(data["ids"])
