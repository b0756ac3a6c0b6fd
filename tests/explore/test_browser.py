"""The explorer in a real headless Chromium driven by Playwright (marker ``browser``).

Search, open a neuron, load a clip (its duration must be > 0), submit a rating and see it
counted, with no console error. Chromium is Debian's (``executable_path``; CI installs it as
for the report's browser tests); without it on PATH these tests skip, as the report's do.
The app runs under uvicorn on 127.0.0.1 with an ephemeral port, in a thread.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from and_toolkit.run import Run

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("chromium is not on PATH (CI installs Debian's chromium; locally: "
                "apt-get install -y chromium)", allow_module_level=True)

import uvicorn  # noqa: E402  (after the skip: only the browser tests need them)
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright  # noqa: E402

from and_toolkit.explore.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def served(explore_run_template: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, Run]]:
    """The hand-made run (a copy: ratings are written) served by uvicorn on 127.0.0.1."""
    root = tmp_path_factory.mktemp("served") / "run"
    shutil.copytree(explore_run_template, root)
    run = Run.at(root)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(run), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", run
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser_page() -> Iterator[tuple[Page, list[str]]]:
    """A Chromium page and the console errors / page errors it logs."""
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                errors.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield page, errors
        finally:
            browser.close()


AUDIO_DURATION = """async () => {
  const a = document.querySelector("figure.clip audio");
  if (a.readyState < 1) {
    await new Promise((resolve, reject) => {
      a.addEventListener("loadedmetadata", resolve, {once: true});
      a.addEventListener("error", () => reject(new Error("audio error " + a.error.code)),
                         {once: true});
      a.load();
    });
  }
  return a.duration;
}"""


def test_search_open_listen_rate(served: tuple[str, Run],
                                 browser_page: tuple[Page, list[str]]) -> None:
    base, run = served
    page, errors = browser_page
    page.goto(base + "/")
    page.wait_for_selector("#results tbody tr")
    page.fill("#q", "unit 3 block2.fc1")
    # waits through locators (the pages' CSP forbids the eval behind wait_for_function)
    expect(page.locator("#results tbody tr")).to_have_count(1)
    expect(page.locator("#total")).to_have_text("1 matching neurons")
    page.click("a.neuron-link")
    page.wait_for_selector("#neuron-title")
    assert "unit 3" in page.inner_text("#neuron-title")
    duration = page.evaluate(AUDIO_DURATION)
    assert duration > 0
    widths = page.evaluate("""async () => Promise.all(Array.from(
        document.querySelectorAll("figure.clip img"), (i) => i.decode().then(() => i.naturalWidth)))""")
    assert widths and all(w > 0 for w in widths)  # every spectrogram decoded

    page.goto(base + "/rate?n=1&i=0")
    page.wait_for_selector("#rate-form")
    page.fill("#rater", "browser-test")
    fieldsets = page.locator("fieldset.description")
    for i in range(fieldsets.count()):
        fieldsets.nth(i).locator("input[type=radio][value='4']").check()
    page.click("#submit-ratings")
    expect(page.locator("#rate-status")).to_have_text(f"Saved {fieldsets.count()} rating(s).")
    assert page.inner_text("#count-total") == str(fieldsets.count())
    assert page.inner_text("#neuron-ratings") == str(fieldsets.count())
    assert run.ratings().height == fieldsets.count() == 3
    assert errors == []


def test_script_in_a_caption_stays_text(served: tuple[str, Run],
                                        browser_page: tuple[Page, list[str]]) -> None:
    base, _ = served
    page, errors = browser_page
    page.goto(base + "/neurons/toy/blocks.0.fc1/0")
    page.wait_for_selector("#neuron-title")
    captions = page.locator("figure.clip .caption").all_inner_texts()
    assert "A loud siren <script>alert(1)</script>" in captions
    assert page.evaluate("document.querySelectorAll('figure.clip script').length") == 0
    assert errors == []


def test_an_unknown_layer_shows_the_reason_and_no_rows(
        served: tuple[str, Run], browser_page: tuple[Page, list[str]]) -> None:
    """Typing a layer that no neuron has: the API's 422 reason (listing the known layers)
    shows, and the table no longer holds rows of the previous query."""
    base, _ = served
    page, errors = browser_page
    page.goto(base + "/")
    page.wait_for_selector("#results tbody tr")
    page.fill("#layer", "nosuch")
    expect(page.locator("#error")).to_contain_text("layer: unknown 'nosuch'")
    expect(page.locator("#error")).to_contain_text("'block1.fc1'")
    expect(page.locator("#results tbody tr")).to_have_count(0)
    expect(page.locator("#total")).to_have_text("")
    page.fill("#layer", "block2.fc1")
    expect(page.locator("#results tbody tr")).to_have_count(4)
    expect(page.locator("#error")).to_have_text("")
    # the browser logs the refused request itself; nothing else may be logged
    assert [e for e in errors if "status of 422" not in e] == []
    errors.clear()
