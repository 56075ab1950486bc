"""report.html and compare.html in a real headless browser: Debian's chromium driven by Playwright
(its Python package, pointed at /usr/bin/chromium; no browser of Playwright's own). Each page is
served over loopback HTTP, opened, and must load without a console error, with every <img>
decoded (complete, naturalWidth > 0) and at least the pictures its folder holds.

Without chromium or playwright the tests skip, unless LOADGEN_REQUIRE_CHROMIUM=1 (as in CI, whose
.ci/run installs chromium), where they fail instead. One browser and one HTTP server per module;
the two short runs and the comparison are made once, against one emulator."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from loadgen.emulator.launch import EmulatorProcess
from tests.integration.test_plots import _loadgen
from tests.real_engines import unavailable

REQUIRE_ENV = "LOADGEN_REQUIRE_CHROMIUM"
CHROMIUM = "/usr/bin/chromium"
#: what works on a closed network as root: no sandbox, no GPU, and none of chromium's own traffic
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: pictures a run of two categories and lengths shows at least: acceptance, AL by category, by position,
#: spread, against length (and the time series where the run lasted two seconds)
RUN_PICTURES = 5
#: a comparison paired by prompt: speedups by load, the per-prompt speedups, per-request AL boxes per run
COMPARE_PICTURES = 3


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A run with speculation, one without and their comparison, under one folder served over
    loopback HTTP: (base URL, folder)."""
    root = tmp_path_factory.mktemp("pages")
    workload = root / "workload.jsonl"  # two categories of two lengths: every AL picture has something to draw
    workload.write_text('{"prompt_token_ids": [11, 12, 13, 14], "category": "code", "max_tokens": 64}\n'
                        '{"prompt_token_ids": [21, 22, 23], "category": "chat", "max_tokens": 24}\n')
    common = ("--workload", str(workload), "-n", "24", "-c", "4", "--max-tokens", "64", "--no-metrics",
              "--no-progress")
    with EmulatorProcess(["--ttft-ms", "2", "--step-ms", "2"]) as spec, \
            EmulatorProcess(["--ttft-ms", "2", "--step-ms", "2", "--accept", ""]) as plain:
        _loadgen("run", "--url", spec.url, "--output-dir", str(root / "sd"), *common)
        _loadgen("run", "--url", plain.url, "--output-dir", str(root / "base"), *common)
    _loadgen("compare", str(root / "sd"), "--baseline", str(root / "base"), "--output-dir", str(root / "compare"))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """One headless chromium for the module."""
    if not os.path.exists(CHROMIUM):
        unavailable(f"{CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)", REQUIRE_ENV)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install '.[dev]')", REQUIRE_ENV)
    with sync_playwright() as playwright:
        # a non-persistent launch gives chromium a fresh, empty --user-data-dir of its own
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser, url: str) -> tuple[list[dict], list[str]]:
    """The page's images (complete, naturalWidth, alt) and every console error or uncaught exception."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        response = page.goto(url, wait_until="load", timeout=60_000)
        assert response is not None and response.ok, url
        images = page.evaluate("Array.from(document.images, i => ({complete: i.complete, "
                               "width: i.naturalWidth, alt: i.alt}))")
    finally:
        page.close()
    return images, errors


@pytest.mark.parametrize(("page", "least"), [("sd/report.html", RUN_PICTURES), ("base/report.html", 1),
                                             ("compare/compare.html", COMPARE_PICTURES)])
def test_page_loads_and_shows_every_picture(browser, served, page, least):
    url, root = served
    images, errors = _open(browser, f"{url}/{page}")
    assert errors == [], errors
    pictures = len(list((root / page).parent.glob("*.png")))  # the page embeds every picture drawn for it
    assert len(images) == pictures >= least, (images, pictures)
    broken = [i["alt"] for i in images if not i["complete"] or i["width"] <= 0]
    assert broken == [], broken
