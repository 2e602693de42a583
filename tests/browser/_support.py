"""Plumbing for the browser tests: Chromium, server subprocesses, page helpers.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``, or the path in
``BAYEUX_CHROMIUM``) driven by Playwright for Python with ``executable_path``:
Playwright never downloads a browser here. Without Playwright or Chromium the
tests are skipped with the reason, or fail when ``CI`` is ``true`` (CI must
run them; ``.ci/run`` installs both): the rule of :mod:`tests._support.ci`.

Servers are ``python -m bayeux_trio serve`` subprocesses on 127.0.0.1, started
from the repository root so that ``--static examples/...`` and
``--extension examples....`` resolve. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import pytest

from tests._support.ci import in_ci, unavailable
from tests._support.ports import HOST, free_port
from tests._support.processes import (
    MOUNT,
    START_TIMEOUT,
    post_json,
    stop_process,
    wait_closed,
    wait_serving,
)

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Request,
        WebSocket,
    )

# Without Playwright this module still imports, so that every test can say
# why it is skipped (or, under CI, fail) instead of breaking the collection.
try:
    from playwright.sync_api import Error, expect, sync_playwright

    expect.set_options(timeout=15_000)
    PLAYWRIGHT_IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - depends on the environment
    PLAYWRIGHT_IMPORT_ERROR = str(exc)

    class Error(Exception):  # type: ignore[no-redef]
        """Stands in for playwright's Error."""

    def expect(*args: object, **kwargs: object) -> Any:  # type: ignore[misc]
        _browser_unavailable(f"Playwright for Python is not installed ({PLAYWRIGHT_IMPORT_ERROR})")


REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
PAGES = Path(__file__).resolve().parent / "pages"
#: the chat demo's server arguments, as `make run` has them (test_make_run.py
#: checks): rooms keep history, so a page away during a restart recovers;
#: rooms tell who is in them, users named by the page (examples/chat_presence.py)
CHAT_ARGS = [
    "--static",
    "examples/chat",
    "--history",
    "/chat/*=100",
    "--presence",
    "/chat/**",
    "--extension",
    "examples.chat_presence:ChatNames",
]
#: how long a page may take to show something the test waits for (ms); a
#: reconnection after a server restart takes a few `retry` periods (5 s each)
WAIT_MS = 15_000
RECONNECT_MS = 45_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRANSPORTS = (
    "websocket",
    "eventsource",
    "long-polling",
    "cross-origin-long-polling",
    "callback-polling",
)


def _browser_unavailable(reason: str) -> NoReturn:
    """A tool the browser tests need is missing: skip, or fail under ``CI=true``."""
    unavailable(f"browser tests cannot run: {reason}")


def chromium_path() -> str:
    configured = os.environ.get("BAYEUX_CHROMIUM")
    if configured:
        return configured
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        _browser_unavailable("Chromium is not installed (Debian: apt-get install chromium)")
    return found


def check_playwright() -> None:
    if PLAYWRIGHT_IMPORT_ERROR is not None:
        _browser_unavailable(
            f"Playwright for Python is not installed ({PLAYWRIGHT_IMPORT_ERROR}); "
            "pip install -e '.[test]'"
        )


# ------------------------------------------------------------------ servers


@dataclass
class Server:
    """A ``bayeux serve`` subprocess on 127.0.0.1."""

    port: int
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    stdin: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.origin}{MOUNT}"

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return "<no log>"

    def start(self, command: Sequence[str] | None = None) -> None:
        """Start (or start again, on the same port) and wait for a handshake."""
        if command is None:
            command = [
                sys.executable,
                "-m",
                "bayeux_trio",
                "serve",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--mount",
                MOUNT,
                *self.args,
            ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        last = wait_serving(self.process, self.port, deadline=time.monotonic() + START_TIMEOUT)
        if last is None:
            return
        self.stop()
        pytest.fail(
            f"the server did not answer a handshake (last: {last!r}); log:\n{self.log_tail()}",
            pytrace=False,
        )

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM (a graceful stop: held connects are answered), then wait.

        ``crash``: SIGKILL instead, so every connection just drops.
        """
        if self.process is None:
            return
        stop_process(self.process, sig=signal.SIGKILL if crash else signal.SIGTERM)
        self.process = None

    def write_line(self, line: str) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def publish(self, channel: str, data: Any) -> Any:
        """Publish over HTTP as a backend would; the server's reply."""
        status, replies = post_json(self.port, {"channel": channel, "data": data}, path=MOUNT)
        assert status == 200, (status, replies)
        return replies


def start_server(log_dir: Path, args: Sequence[str], *, port: int | None = None) -> Server:
    """A ``bayeux serve`` with ``args`` on ``port`` (a free one if None), answering."""
    server = Server(port or free_port(), list(args), log_dir / "server.log")
    server.start()
    return server


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------- pages


@dataclass
class Traffic:
    """What a page sent to the Bayeux endpoint, by transport.

    ``connects`` lists ``(transport, connectionType)`` for every
    ``/meta/connect`` the page put on the wire: the transport is read from
    the request itself (a WebSocket frame, a JSON POST, a form POST, a JSON-P
    script), the connectionType from the message.
    """

    endpoint: str
    kinds: set[str] = field(default_factory=set)
    connects: list[tuple[str, str]] = field(default_factory=list)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: messages that came back on a WebSocket
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def reset(self) -> None:
        for collected in (self.kinds, self.connects, self.messages, self.received, self.headers):
            collected.clear()

    def attach(self, page: Page) -> None:
        page.on("request", self._request)
        page.on("websocket", self._websocket)

    def _record(self, transport: str, body: Any) -> None:
        self.kinds.add(transport)
        for message in body if isinstance(body, list) else [body]:
            if not isinstance(message, dict):
                continue
            self.messages.append((transport, message))
            if message.get("channel") == "/meta/connect":
                self.connects.append((transport, str(message.get("connectionType"))))

    def _request(self, request: Request) -> None:
        url = request.url
        if not url.startswith(self.endpoint) or url.endswith((".js", ".map")):
            return
        query = parse_qs(urlsplit(url).query)
        if request.resource_type == "eventsource":
            self.kinds.add("eventsource-stream")
            return
        if request.method == "GET" and "jsonp" in query:
            self._record("callback-polling", json.loads(query["message"][0]))
            return
        if request.method != "POST":
            return
        self.headers.append(request.headers)
        body = request.post_data or ""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            self._record("http-json", json.loads(body))
        elif body.startswith("message="):
            self._record("http-form", json.loads(parse_qs(body)["message"][0]))

    def _websocket(self, socket: WebSocket) -> None:
        if not socket.url.replace("ws://", "http://", 1).startswith(self.endpoint):
            return

        def sent(payload: str | bytes) -> None:
            text = payload if isinstance(payload, str) else payload.decode()
            with contextlib.suppress(ValueError):
                self._record("websocket", json.loads(text))

        def received(payload: str | bytes) -> None:
            text = payload if isinstance(payload, str) else payload.decode()
            with contextlib.suppress(ValueError):
                body = json.loads(text)
                self.received.extend(m for m in body if isinstance(m, dict))

        socket.on("framesent", sent)
        socket.on("framereceived", received)

    def connection_types(self) -> set[str]:
        return {connection_type for _, connection_type in self.connects}

    def transports(self) -> set[str]:
        return {transport for transport, _ in self.connects}


#: how each connectionType travels on the wire, as Traffic names it
WIRE = {
    "websocket": "websocket",
    "eventsource": "http-json",  # connects are POSTed; deliveries come on the stream
    "long-polling": "http-json",
    "cross-origin-long-polling": "http-form",
    "callback-polling": "callback-polling",
}


@dataclass
class Tab:
    """A page in its own browser context, with what it sent and its errors."""

    page: Page
    traffic: Traffic
    errors: list[str]
    console: list[str]

    def check_no_errors(self) -> None:
        assert not self.errors, f"uncaught errors in the page: {self.errors}"

    def wait_until(
        self, predicate: Callable[[], bool], what: str, timeout_ms: int = WAIT_MS
    ) -> None:
        """Let the page run until ``predicate()`` holds (checked every 50 ms, bounded)."""
        for _ in range(max(1, timeout_ms // 50)):
            if predicate():
                return
            self.page.wait_for_timeout(50)
        raise AssertionError(f"gave up waiting for {what}")


class Browsers:
    """Opens pages in fresh contexts of one Chromium; closes them at the end."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.tabs: list[Tab] = []

    def open(
        self, url: str, *, endpoint: str, client_script: Path | None = None, wait: bool = True
    ) -> Tab:
        context = self.browser.new_context()
        self.contexts.append(context)
        if client_script is not None:
            body = client_script.read_bytes()
            context.route(
                "**/faye/client.js",
                lambda route: route.fulfill(
                    status=200, body=body, content_type="text/javascript; charset=utf-8"
                ),
            )
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        tab = Tab(page, Traffic(endpoint), [], [])
        tab.traffic.attach(page)
        page.on("pageerror", lambda error: tab.errors.append(str(error)))
        page.on("console", lambda message: _console(tab, message))
        self.tabs.append(tab)
        page.goto(url, wait_until="load" if wait else "commit")
        return tab

    def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Error):
                context.close()
        self.contexts.clear()


def _console(tab: Tab, message: ConsoleMessage) -> None:
    tab.console.append(f"{message.type}: {message.text}")


@contextlib.contextmanager
def launch_chromium() -> Iterator[Browser]:
    check_playwright()
    executable = chromium_path()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
        except Error as exc:
            _browser_unavailable(f"Chromium at {executable} did not start: {exc}")
        try:
            yield browser
        finally:
            browser.close()


__all__ = [
    "CHAT_ARGS",
    "EXAMPLES",
    "HOST",
    "MOUNT",
    "PAGES",
    "PLAYWRIGHT_IMPORT_ERROR",
    "RECONNECT_MS",
    "REPO_ROOT",
    "TRANSPORTS",
    "WAIT_MS",
    "WIRE",
    "Browsers",
    "Server",
    "Tab",
    "Traffic",
    "expect",
    "free_port",
    "in_ci",
    "launch_chromium",
    "running",
    "start_server",
    "unavailable",
    "wait_closed",
]
