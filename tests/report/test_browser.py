"""The report in a real headless Chromium: DOM, console, screenshot (marker ``browser``).

Chromium is installed by the CI scripts (Debian ``chromium``); without it on PATH these tests skip.
The page is served from 127.0.0.1 on an ephemeral port by ``http.server`` in a thread. Set
``AND_REPORT_SCREENSHOT=/path/report.png`` to keep the screenshot.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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
