"""Fixtures for the ASGI browser tests: Chromium, and the ASGI chat example.

The example runs exactly as docs/asgi.md starts it (``uvicorn
examples.asgi.app:app``) on a free loopback port. Package scope, as in
tests/browser: Playwright's sync API keeps an asyncio loop marked as running
while a browser is open, so the browser closes when this package is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.asgi._support import Flavour, start
from tests.browser._support import Browsers, Server, launch_chromium
from tests.interop._support import ensure_node_modules, running

if TYPE_CHECKING:
    from playwright.sync_api import Browser

EXAMPLE = Flavour(
    "uvicorn-example",
    "examples.asgi.app:app",
    ("uvicorn", "--timeout-graceful-shutdown", "2", "--log-level", "warning"),
    static_pages=True,
)


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless (skipped if missing, failed under CI=true)."""
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def browsers(chromium: Browser) -> Iterator[Browsers]:
    """Opens pages; afterwards, fails the test if a page threw an uncaught error."""
    pages = Browsers(chromium)
    try:
        yield pages
    finally:
        pages.close()
    for tab in pages.tabs:
        tab.check_no_errors()


@pytest.fixture(scope="package")
def asgi_chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The ASGI chat example under uvicorn, as a tests/browser ``Server``."""
    log = tmp_path_factory.mktemp("asgi-chat") / "server.log"
    with running(start(EXAMPLE, log)) as process:
        yield Server(port=process.port, args=[], log=log)


@pytest.fixture(scope="package")
def faye_bundle() -> Path:
    """The official Faye 1.4.3 browser bundle, from the npm package."""
    bundle = ensure_node_modules() / "faye" / "client" / "faye-browser-min.js"
    assert bundle.is_file(), f"no browser bundle in the faye package: {bundle}"
    return bundle
