"""Headless Chromium through Playwright: a signed-in admin page, layout checks, screenshots.

Debian's chromium (`make chromium`) is driven, never a browser Playwright downloads. Playwright's
sync API marks its event loop as running in the test's thread while the browser is open, and
Django then refuses database access there: create the data and the session before the browser
starts (the `admin_page` fixture opens it last), assert on the database after it closes.

Registered as a pytest plugin by tests/conftest.py; Django is imported inside the functions so
that the protocol tests still run with `-p no:django`.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypedDict

import pytest
from daphne.testing import DaphneProcess
from playwright.sync_api import Browser, Page, sync_playwright

VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
TIMEOUT_MS = 15_000  # every Playwright wait: navigation, selectors, evaluate
LAUNCH_TIMEOUT_MS = 30_000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Launch Debian's headless Chromium; fail, not skip, when it is not installed."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium is not installed (`make chromium` installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()


def session_cookie(user: Any) -> str:
    """Return a session id for `user`, as the admin login form would set it."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def signed_in_page(browser: Browser, base_url: str, sessionid: str) -> Page:
    """Open a 1280×800 page on `base_url` carrying the session cookie."""
    context = browser.new_context(viewport=VIEWPORT, base_url=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    context.add_cookies([{"name": "sessionid", "value": sessionid, "url": base_url}])
    return context.new_page()


def screenshot(page: Page, test_name: str, label: str) -> Path:
    """Save a full-page screenshot as artifacts/screenshots/<test-name>-<label>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{test_name}-{label}").strip("-")
    path = SCREENSHOTS / f"{stem}.png"
    page.screenshot(path=str(path), full_page=True, timeout=TIMEOUT_MS)
    print(f"screenshot: {path}")
    return path


class Overlap(TypedDict):
    tool: str
    tool_box: list[float]
    text_box: list[float]


class TitleMeasure(TypedDict):
    title: str
    text_boxes: list[list[float]]
    tools: int
    overlaps: list[Overlap]


class TableMeasure(TypedDict):
    table: str
    container: str
    width: float
    container_width: float


class WidthMeasure(TypedDict):
    result_list: bool
    tables: list[TableMeasure]
    too_wide: list[TableMeasure]
    document_width: int


# The title's text, not its block: the h1 spans the whole row, its words do not. Each line of
# each text node is one box; a tool overlaps when it shares any area with one of them.
_MEASURE_TITLE = """() => {
    const box = (r) => [r.left, r.top, r.right, r.bottom].map((v) => Math.round(v * 10) / 10);
    const h1 = document.querySelector("#content h1");
    if (!h1) return null;
    const walker = document.createTreeWalker(h1, NodeFilter.SHOW_TEXT);
    const textBoxes = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (!node.textContent.trim()) continue;
        const range = document.createRange();
        range.selectNodeContents(node);
        for (const r of range.getClientRects()) {
            if (r.width > 0 && r.height > 0) textBoxes.push(r);
        }
    }
    const tools = Array.from(
        document.querySelectorAll("#content ul.object-tools li, #content ul.object-tools a")
    ).filter((el) => el.getClientRects().length > 0);
    const overlaps = [];
    for (const el of tools) {
        const t = el.getBoundingClientRect();
        for (const r of textBoxes) {
            const shared = t.left < r.right && r.left < t.right
                && t.top < r.bottom && r.top < t.bottom;
            if (shared) {
                const label = el.textContent.trim().replace(/\\s+/g, " ");
                overlaps.push({
                    tool: el.tagName.toLowerCase() + " " + label,
                    tool_box: box(t),
                    text_box: box(r),
                });
            }
        }
    }
    return {
        title: h1.textContent.trim().replace(/\\s+/g, " "),
        text_boxes: textBoxes.map(box),
        tools: tools.length,
        overlaps: overlaps,
    };
}"""

# A table is measured against the nearest #changelist or #content-main holding it: a table in a
# scrolling .results div still counts as too wide, its last columns are off screen.
_MEASURE_WIDTHS = """() => {
    const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
        + Array.from(el.classList).map((c) => "." + c).join("");
    const tables = new Set(document.querySelectorAll("#changelist table, #content-main table"));
    const measured = [];
    for (const table of tables) {
        if (table.getClientRects().length === 0) continue;  // hidden: nothing to fit
        const container = table.closest("#changelist, #content-main");
        const width = Math.max(table.scrollWidth, table.getBoundingClientRect().width);
        measured.push({
            table: name(table),
            container: name(container),
            width: Math.round(width * 10) / 10,
            container_width: container.clientWidth,
        });
    }
    return {
        result_list: document.querySelector("table#result_list") !== null,
        tables: measured,
        too_wide: measured.filter((m) => m.width > m.container_width + 1),
        document_width: document.documentElement.scrollWidth,
    };
}"""


def measure_title(page: Page) -> TitleMeasure:
    """Measure the title text of `#content h1` and the object tools that overlap it."""
    measure = page.evaluate(_MEASURE_TITLE)
    assert measure is not None, f"{page.url} has no #content h1"
    assert measure["text_boxes"], f"{page.url}: the title has no visible text"
    return measure


def measure_widths(page: Page) -> WidthMeasure:
    """Measure the tables of the content against their containers, and the document's width."""
    return page.evaluate(_MEASURE_WIDTHS)


def assert_title_clear_of_tools(page: Page) -> TitleMeasure:
    """Check that no object tool (li or a) covers any of the title's text."""
    measure = measure_title(page)
    assert measure["overlaps"] == [], f"{page.url}: object tools over the title: {measure}"
    return measure


def assert_fits_the_viewport(page: Page) -> WidthMeasure:
    """Check that no table is wider than its container and the page does not scroll sideways."""
    measure = measure_widths(page)
    assert measure["too_wide"] == [], f"{page.url}: tables wider than their container: {measure}"
    assert measure["document_width"] <= VIEWPORT["width"], (
        f"{page.url}: the document scrolls sideways: {measure}"
    )
    return measure


@pytest.fixture
def admin_page(live_server: Any, superuser: Any) -> Iterator[Page]:
    """A 1280×800 Chromium page signed in as a superuser, on pytest-django's live server.

    Request it after the fixtures that write data: the database is out of reach once it opens.
    """
    sessionid = session_cookie(superuser)
    with chromium() as browser:
        yield signed_in_page(browser, live_server.url, sessionid)


class DaphneWithFreshPools(DaphneProcess):
    """Daphne in a forked child that keeps the test database and opens its own Postgres pool.

    For channels' ChannelsLiveServerTestCase, where pages need websockets. The parent's pool
    objects are copied by fork with their sockets; using them from the child would interleave
    two processes on one connection, so the child forgets them (not closes: closing would hang
    up the parent's connections). The forked settings already name the test database; channels'
    own setup would prefix "test_" a second time on Postgres. Websocket consumers run sync code
    on asgiref's process-wide single-thread executor; if an earlier async test started its
    worker thread, the fork copied the executor but not the thread, and every call would wait
    forever, so the child gets a new executor.
    """

    def run(self) -> None:
        from asgiref.sync import SyncToAsync
        from django.db import connections

        self.setup = None
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)

        for connection in connections.all():
            pools = getattr(type(connection), "_connection_pools", None)
            if pools is not None:
                pools.clear()
        super().run()
