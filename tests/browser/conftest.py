"""Fixtures for the browser tests: one Chromium, pages, and demo servers.

Each demo runs as its own ``bayeux serve`` subprocess while this package's
tests run, exactly as its README command starts it; tests use their own rooms
and channels so that they do not see each other's messages.

Everything here has package scope, not session scope: Playwright's sync API
keeps an asyncio loop marked as running in the main thread while a browser is
open, which would break later tests that call ``asyncio.run()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.interop._support import ensure_node_modules

from ._support import (
    CHAT_ARGS,
    EXAMPLES,
    PAGES,
    Browsers,
    Server,
    launch_chromium,
    running,
    start_server,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, through Playwright (skipped or failed if missing).

    Closed when this package's tests are done (see the module docstring).
    """
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


def _serve(factory: pytest.TempPathFactory, name: str, *args: str) -> Iterator[Server]:
    with running(start_server(factory.mktemp(name), args)) as server:
        yield server


@pytest.fixture(scope="package")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The chat demo, as `make run` serves it (``bayeux serve`` with ``CHAT_ARGS``)."""
    yield from _serve(tmp_path_factory, "chat", *CHAT_ARGS)


@pytest.fixture(scope="package")
def other_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The chat pages again, from another port: pages whose endpoint is cross-origin."""
    yield from _serve(tmp_path_factory, "other-origin", "--static", str(EXAMPLES / "chat"))


@pytest.fixture(scope="package")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The private chat demo with its token-checking extension."""
    yield from _serve(
        tmp_path_factory,
        "private",
        "--static",
        str(EXAMPLES / "private_chat" / "public"),
        "--extension",
        "examples.private_chat.auth:PrivateChatAuth",
    )


@pytest.fixture(scope="package")
def broadcast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The broadcast notifications demo: ``bayeux serve --static examples/broadcast/public``."""
    yield from _serve(
        tmp_path_factory, "broadcast", "--static", str(EXAMPLES / "broadcast" / "public")
    )


@pytest.fixture(scope="package")
def harness_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A bare page that loads client.js, for the client API tests.

    Connects are held 5 s, not 25: a client that switches transport (to an
    EventSource that has just opened, say) sends its next connect, declaring
    the new type, once the one held on the old transport returns.
    """
    yield from _serve(tmp_path_factory, "harness", "--static", str(PAGES), "--timeout", "5")


@pytest.fixture(scope="package")
def faye_bundle() -> Path:
    """The official Faye 1.4.3 browser bundle, from the npm package (cached outside the tree)."""
    bundle = ensure_node_modules() / "faye" / "client" / "faye-browser-min.js"
    assert bundle.is_file(), f"no browser bundle in the faye package: {bundle}"
    return bundle
