"""The operator's console (issue 19) in Chromium: sign in, the live views, its actions.

Each test starts its own ``bayeux serve --admin-path /admin --console-path
/console`` (the admin token in a file, as docs/operations.md says), so that the
counts it checks are its own. Load comes from Python (long-polling and
WebSocket Bayeux clients on the wire), publishes from the admin API or a
backend's HTTP POST, and a subscriber or a kicked client is the npm ``faye``
1.4.3 client (tests/interop/js/faye_listen.js).

Screenshots of each view, at 1280x800 and at phone width, are saved in
``<pytest basetemp>/console-screenshots``. ``docs/console.png`` is taken again
with ``.venv/bin/python -m tests.browser.test_console [OUTPUT.png]``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests._support.ports import HOST
from tests.interop._support import JS_DIR, RawWebSocket, ensure_node_modules

from ._support import (
    CHAT_ARGS,
    MOUNT,
    REPO_ROOT,
    WAIT_MS,
    Browsers,
    Server,
    Tab,
    expect,
    launch_chromium,
    running,
    start_server,
    unavailable,
)
from .test_chat import open_chat

if TYPE_CHECKING:
    from playwright.sync_api import Request, Route, ViewportSize

TOKEN = "console-test-token-0123456789abcdef"
ADMIN = "/admin"
CONSOLE = "/console"
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "console.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
#: what a number shows before there is one (an en dash)
NO_VALUE = "\u2013"
VIEWS = ("overview", "channels", "clients", "publish")
#: the counters the overview shows that hold still once the load stops (the
#: HTTP connection count moves with every request, the page's and the test's)
STEADY = (
    "connections.websocket",
    "connections.eventsource",
    "sessions",
    "subscriptions",
    "channels",
    "held_connects",
    "queued",
    "totals.publishes",
    "totals.deliveries",
    "totals.handshakes",
    "totals.overflows",
    "errors.total",
)


# ---------------------------------------------------------------- servers


def console_args(log_dir: Path, *extra: str) -> list[str]:
    token_file = log_dir / "admin-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    return [
        "--admin-path",
        ADMIN,
        "--admin-token-file",
        str(token_file),
        "--console-path",
        CONSOLE,
        *extra,
    ]


@pytest.fixture
def console_server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server with the console on, presence on /chat/**, and named users."""
    args = console_args(
        tmp_path, "--presence", "/chat/**", "--extension", "examples.chat_presence:ChatNames"
    )
    with running(start_server(tmp_path, args)) as server:
        yield server


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the views' screenshots go (kept with pytest's temporary files)."""
    folder = tmp_path_factory.getbasetemp() / "console-screenshots"
    folder.mkdir(exist_ok=True)
    return folder


def admin(
    server: Server, method: str, path: str, body: Any = None, *, token: str | None = TOKEN
) -> tuple[int, Any]:
    """One admin API call, as curl would make it: (status, decoded JSON)."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    try:
        connection.request(method, ADMIN + path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode("utf-8", "replace")


def stats(server: Server) -> dict[str, Any]:
    status, answer = admin(server, "GET", "/stats")
    assert status == 200, answer
    assert isinstance(answer, dict)
    return answer


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT_MS / 1000) -> None:
    """Poll ``predicate`` every 100 ms until it holds, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout * 10) + 1):
        if predicate():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


# ------------------------------------------------------------------- load


def post(server: Server, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        connection.request(
            "POST", MOUNT, body=json.dumps(messages), headers={"Content-Type": "application/json"}
        )
        replies: list[dict[str, Any]] = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    return replies


def handshake(server: Server, ext: dict[str, Any] | None = None) -> str:
    message: dict[str, Any] = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling", "websocket"],
    }
    if ext is not None:
        message["ext"] = ext
    (reply,) = post(server, [message])
    assert reply["successful"], reply
    return str(reply["clientId"])


def subscribe(server: Server, client_id: str, channel: str) -> None:
    (reply,) = post(
        server, [{"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}]
    )
    assert reply["successful"], reply


class WsClient:
    """A Bayeux session on a WebSocket, its connect held by the server."""

    def __init__(self, server: Server, channel: str) -> None:
        self.socket = RawWebSocket(server.port, MOUNT)
        self.client_id = self._call(
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["websocket"],
            }
        )["clientId"]
        self._call(
            {"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": channel}
        )
        # The first connect is answered at once; the second is held.
        self._call(
            {"channel": "/meta/connect", "clientId": self.client_id, "connectionType": "websocket"}
        )
        self.socket.send(
            json.dumps(
                [
                    {
                        "channel": "/meta/connect",
                        "clientId": self.client_id,
                        "connectionType": "websocket",
                    }
                ]
            )
        )

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        self.socket.send(json.dumps([message]))
        for _ in range(20):
            text = self.socket.receive(timeout=5)
            assert text is not None, f"no reply to {message}"
            for reply in json.loads(text):
                if reply.get("channel") == message["channel"]:
                    assert reply.get("successful"), reply
                    return dict(reply)
        raise AssertionError(f"no reply to {message}")

    def close(self) -> None:
        self.socket.close()


class FayeListener:
    """The npm faye client subscribed to a channel (js/faye_listen.js), read line by line."""

    def __init__(self, server: Server, channel: str, transport: str = "websocket") -> None:
        node_modules = ensure_node_modules()
        env = dict(os.environ, NODE_PATH=str(node_modules))
        env.pop("http_proxy", None)
        env.pop("HTTP_PROXY", None)
        options = {"transport": transport, "channel": channel, "lifetime": 90_000}
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            ["node", str(JS_DIR / "faye_listen.js"), server.endpoint, json.dumps(options)],
            cwd=JS_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.decode("utf-8", "replace"))
        self._lines.put(None)

    def wait(
        self,
        kind: str,
        timeout: float = 20.0,
        where: Callable[[dict[str, Any]], bool] = lambda event: True,
        **match: Any,
    ) -> dict[str, Any]:
        """The first event of ``kind`` whose fields match, waiting at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            for event in self.of(kind, **match):
                if where(event):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    self.events.append(event)
        raise AssertionError(f"faye_listen.js: no {kind} {match}; saw {self.events}")

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event") == kind and all(e.get(k) == v for k, v in match.items())
        ]

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def faye_listener(
    server: Server, channel: str, transport: str = "websocket"
) -> Iterator[FayeListener]:
    listener = FayeListener(server, channel, transport)
    try:
        yield listener
    finally:
        listener.close()


# ------------------------------------------------------------------- page


def open_console(browsers: Browsers, server: Server, *, viewport: ViewportSize = DESKTOP) -> Tab:
    tab = browsers.open(f"{server.origin}{CONSOLE}/", endpoint=server.endpoint)
    tab.page.set_viewport_size(viewport)
    return tab


def sign_in(tab: Tab, token: str = TOKEN) -> None:
    page = tab.page
    page.fill("#token", token)
    page.press("#token", "Enter")


def signed_in(browsers: Browsers, server: Server, *, viewport: ViewportSize = DESKTOP) -> Tab:
    tab = open_console(browsers, server, viewport=viewport)
    sign_in(tab)
    expect(tab.page.locator("#app")).to_be_visible()
    expect(tab.page.locator("#status")).to_have_text("live")
    return tab


def show(tab: Tab, view: str) -> None:
    tab.page.click(f"#tab-{view}")
    expect(tab.page.locator(f"#view-{view}")).to_be_visible()


def shown_numbers(tab: Tab) -> dict[str, str | None]:
    """Every number on the overview, by its ``data-stat`` name (raw value, not the text)."""
    found: dict[str, str | None] = tab.page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll('[data-stat]'),
                 (node) => [node.dataset.stat, node.dataset.value ?? null]))"""
    )
    return found


def api_numbers(answer: dict[str, Any]) -> dict[str, str | None]:
    """The same names, from a ``/stats`` answer."""
    flat: dict[str, Any] = {
        f"connections.{kind}": answer["connections"][kind] for kind in answer["connections"]
    }
    for name in ("sessions", "subscriptions", "channels", "held_connects", "queued"):
        flat[name] = answer[name]
    for name in ("publishes", "deliveries", "handshakes", "overflows"):
        flat[f"totals.{name}"] = answer["totals"][name]
    flat["errors.total"] = sum(answer["totals"]["errors"].values())
    return {name: str(value) for name, value in flat.items()}


def screenshot(tab: Tab, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    tab.page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    return path


# ------------------------------------------------------------------ tests


def test_sign_in_refuses_a_wrong_token_and_accepts_the_right_one(
    browsers: Browsers, console_server: Server, shots: Path
) -> None:
    tab = open_console(browsers, console_server)
    page = tab.page
    expect(page.locator("#token")).to_be_focused()
    screenshot(tab, shots, "sign-in")
    sign_in(tab, "not-the-token-0123456789")
    expect(page.locator("#signin-error")).to_have_text("Wrong token: the server refused it.")
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator('[data-stat="sessions"]')).to_have_text(NO_VALUE)
    screenshot(tab, shots, "sign-in-refused")
    sign_in(tab)
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#signin")).to_be_hidden()
    expect(page.locator("#node")).to_have_text(f"node {stats(console_server)['node']}")
    # Signing out forgets the token and everything shown.
    page.click("#sign-out")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator('[data-stat="sessions"]')).to_have_text(NO_VALUE)
    expect(page.locator("#token")).to_have_value("")


def test_the_overview_matches_the_admin_api_after_a_scripted_load(
    browsers: Browsers, console_server: Server, shots: Path
) -> None:
    before = stats(console_server)
    long_polling = [handshake(console_server) for _ in range(3)]
    for client_id in long_polling:
        subscribe(console_server, client_id, "/load/polled")
    sockets = [WsClient(console_server, "/load/ws") for _ in range(2)]
    try:
        for number in range(7):
            console_server.publish("/load/ws", {"n": number})
        for number in range(4):
            status, _ = admin(
                console_server, "POST", "/publish", {"channel": "/load/polled", "data": number}
            )
            assert status == 200
        tab = signed_in(browsers, console_server)

        def same() -> bool:
            shown = shown_numbers(tab)
            answer = api_numbers(stats(console_server))
            return all(shown.get(name) == answer[name] for name in STEADY)

        wait_for(same, "the overview to show what GET /admin/stats says")
        answer = stats(console_server)
        # ... and what it says is the load: our 5 sessions (next to the one
        # start_server's readiness probe made), 2 on WebSockets with their
        # connects held, 5 subscriptions, 11 publishes.
        status, listed = admin(console_server, "GET", "/clients")
        assert status == 200
        ours = set(long_polling) | {socket.client_id for socket in sockets}
        assert ours <= {client["id"] for client in listed["clients"]}
        assert answer["sessions"] == len(listed["clients"]), answer
        assert answer["subscriptions"] - before["subscriptions"] == 5, answer
        assert answer["connections"]["websocket"] == 2, answer
        assert answer["held_connects"] == 2, answer
        assert answer["totals"]["handshakes"] - before["totals"]["handshakes"] == 5, answer
        assert answer["totals"]["publishes"] - before["totals"]["publishes"] == 11, answer
        shown = shown_numbers(tab)
        assert shown["sessions"] == str(answer["sessions"])
        assert shown["totals.publishes"] == str(answer["totals"]["publishes"])
        # The rates and their sparklines come from the history.
        expect(tab.page.locator("#spark-publishes polyline")).to_have_count(1)
        screenshot(tab, shots, "overview")
        tab.page.set_viewport_size(PHONE)
        screenshot(tab, shots, "overview-phone")
    finally:
        for socket in sockets:
            socket.close()


def test_channels_are_listed_busiest_first_searchable_with_presence_members(
    browsers: Browsers, console_server: Server, shots: Path
) -> None:
    for name in ("Alice", "Bob"):
        subscribe(console_server, handshake(console_server, {"name": name}), "/chat/lobby")
    for _ in range(3):
        subscribe(console_server, handshake(console_server), "/news/sport")
    tab = signed_in(browsers, console_server)
    page = tab.page
    show(tab, "channels")
    rows = page.locator("#channels tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-channel", "/news/sport")  # 3 subscribers
    expect(rows.nth(1)).to_have_attribute("data-channel", "/chat/lobby")
    expect(rows.nth(0).locator("td.num")).to_have_text("3")
    page.click('#channels button[data-channel="/chat/lobby"]')
    expect(page.locator("#members li")).to_have_count(2)
    expect(page.locator('#members li[data-user="alice"]')).to_have_count(1)
    screenshot(tab, shots, "channels")
    page.fill("#channel-search", "news")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_have_attribute("data-channel", "/news/sport")
    page.fill("#channel-search", "nothing-like-this")
    expect(page.locator("#channels-empty")).to_have_text("No channel matches “nothing-like-this”.")


def test_empty_views_say_what_to_do(
    browsers: Browsers, console_server: Server, shots: Path
) -> None:
    tab = signed_in(browsers, console_server)
    show(tab, "clients")
    expect(tab.page.locator("#clients-empty")).to_contain_text(
        "No clients connected. Point a client at"
    )
    expect(tab.page.locator("#clients-empty")).to_contain_text(console_server.endpoint)
    screenshot(tab, shots, "clients-empty")
    show(tab, "channels")
    expect(tab.page.locator("#channels-empty")).to_contain_text("No subscriptions yet.")


def test_a_publish_from_the_console_reaches_an_npm_faye_subscriber(
    browsers: Browsers, console_server: Server, shots: Path
) -> None:
    channel = "/console/news"
    with faye_listener(console_server, channel) as listener:
        listener.wait("subscribed")
        tab = signed_in(browsers, console_server)
        page = tab.page
        show(tab, "publish")
        page.fill("#publish-channel", channel)
        page.fill("#publish-data", '{"text": "hello from the console", "n": 1}')
        page.click("#publish")
        expect(page.locator("#publish-result")).to_contain_text(f"Published to {channel}")
        message = listener.wait("message")
        assert message["data"] == {"text": "hello from the console", "n": 1}
        # The live tail (the page's own client.js session, admitted by a
        # ticket) saw it arrive too.
        expect(page.locator("#tail-state")).to_have_attribute("data-state", "live")
        line = page.locator(f'#tail li[data-channel="{channel}"]')
        expect(line).to_have_count(1)
        expect(line.locator("pre")).to_contain_text("hello from the console")
        # A message from elsewhere shows in the tail as well.
        console_server.publish(channel, {"text": "from a backend"})
        expect(page.locator("#tail li")).to_have_count(2)
        assert listener.wait("message", data={"text": "from a backend"})
        # Bad JSON is refused on the page, before any call.
        page.fill("#publish-data", "{not json")
        page.click("#publish")
        expect(page.locator("#publish-result")).to_contain_text("The data is not JSON")
        screenshot(tab, shots, "publish")
        tab.page.set_viewport_size(PHONE)
        screenshot(tab, shots, "publish-phone")


def test_kicking_a_client_from_the_console_stops_it(
    browsers: Browsers, console_server: Server, shots: Path
) -> None:
    with faye_listener(console_server, "/kick/me") as listener:
        subscribed = listener.wait("subscribed")
        client_id = str(subscribed["clientId"])
        tab = signed_in(browsers, console_server)
        page = tab.page
        show(tab, "clients")
        # Search by the clientId's prefix: only that client is left.
        page.fill("#client-search", client_id[:8])
        rows = page.locator("#clients tbody tr")
        expect(rows).to_have_count(1)
        page.click(f'#clients button[data-id="{client_id}"]')
        expect(page.locator("#client-id")).to_have_text(client_id)
        expect(page.locator('#client-details [data-field="transport"]')).to_have_text("websocket")
        expect(page.locator("#client-subscriptions li")).to_have_text(["/kick/me"])
        screenshot(tab, shots, "clients")
        # Cancel keeps it ...
        page.click("#kick")
        expect(page.locator("#confirm-kick")).to_be_visible()
        screenshot(tab, shots, "clients-confirm")
        page.click("#confirm-cancel")
        expect(page.locator("#confirm-kick")).to_be_hidden()
        assert admin(console_server, "GET", f"/clients/{client_id}")[0] == 200
        # ... confirming kicks it: the held connect comes back with
        # reconnect: none, and the client stays away.
        page.click("#kick")
        page.click("#confirm-ok")
        expect(page.locator("#client-message")).to_contain_text(f"Disconnected {client_id}")
        listener.wait(
            "reply",
            channel="/meta/connect",
            where=lambda event: (event.get("advice") or {}).get("reconnect") == "none",
        )
        handshakes = len(listener.of("sent", channel="/meta/handshake"))
        time.sleep(2)  # the client would handshake again at once if it wanted to
        assert len(listener.of("sent", channel="/meta/handshake")) == handshakes
        assert admin(console_server, "GET", f"/clients/{client_id}")[0] == 404
        expect(rows).to_have_count(0)


def test_a_cluster_of_two_nodes_on_redis_shows_both(
    browsers: Browsers, tmp_path: Path, shots: Path
) -> None:
    from tests.redis.conftest import REDIS_SERVER, RedisProcess

    if REDIS_SERVER is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    redis = RedisProcess(tmp_path)
    redis.start()
    try:
        engine = ["--engine", redis.url.rsplit("/", 1)[0] + "/7"]
        first_dir, second_dir = tmp_path / "a", tmp_path / "b"
        first_dir.mkdir()
        second_dir.mkdir()
        first = start_server(first_dir, console_args(first_dir, *engine))
        with (
            running(first),
            running(start_server(second_dir, console_args(second_dir, *engine))) as second,
        ):
            ids = {stats(first)["node"], stats(second)["node"]}
            assert len(ids) == 2
            tab = signed_in(browsers, first)
            nodes = tab.page.locator("#nodes tbody tr")
            expect(nodes).to_have_count(2, timeout=20_000)
            shown = {nodes.nth(i).get_attribute("data-node") for i in range(2)}
            assert shown == ids
            own = tab.page.locator(f'#nodes tr[data-node="{stats(first)["node"]}"]')
            expect(own).to_contain_text("(this node)")
            expect(tab.page.locator("#nodes .pill")).to_have_text(["healthy", "healthy"])
            screenshot(tab, shots, "overview-redis")
    finally:
        redis.stop()


def test_the_views_work_from_the_keyboard_at_phone_width(
    browsers: Browsers, console_server: Server, shots: Path
) -> None:
    client_id = handshake(console_server)
    subscribe(console_server, client_id, "/keyboard")
    tab = open_console(browsers, console_server, viewport=PHONE)
    page = tab.page
    page.keyboard.type(TOKEN)  # the token field has the focus
    page.keyboard.press("Enter")
    expect(page.locator("#app")).to_be_visible()
    page.focus("#tab-overview")
    # Arrows move between the tabs, and the focus shows.
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-channels")).to_be_focused()
    expect(page.locator("#tab-channels")).to_have_attribute("aria-selected", "true")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), outline
    page.keyboard.press("ArrowRight")
    expect(page.locator("#view-clients")).to_be_visible()
    # Tab reaches the client's button; Enter opens it.
    button = page.locator(f'#clients button[data-id="{client_id}"]')
    expect(button).to_be_visible()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.dataset.id || null") == client_id:
            break
    expect(button).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#client-id")).to_have_text(client_id)
    # Nothing is wider than the phone's screen.
    for view in VIEWS:
        show(tab, view)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (view, width)
        screenshot(tab, shots, f"{view}-phone-keyboard")


# -------------------------------------------------------------- security


def test_the_console_files_hold_no_data(console_server: Server) -> None:
    client_id = handshake(console_server, {"name": "Zebedee Quux"})
    subscribe(console_server, client_id, "/chat/secret-room")
    node = stats(console_server)["node"]
    for name in ("", "/", "/console.js", "/console.css"):
        connection = http.client.HTTPConnection(HOST, console_server.port, timeout=10)
        try:
            connection.request("GET", CONSOLE + name)
            response = connection.getresponse()
            body = response.read().decode()
        finally:
            connection.close()
        # <console> without its slash may redirect to <console>/
        assert response.status in ((200, 308) if name == "" else (200,)), (name, response.status)
        for secret in (client_id, "secret-room", node, TOKEN, "zebedee"):
            assert secret not in body, (name, secret)
        assert response.getheader("Access-Control-Allow-Origin") is None
        if name:
            assert "script-src 'self'" in (response.getheader("Content-Security-Policy") or "")


def test_the_token_stays_in_memory_and_goes_only_in_the_authorization_header(
    browsers: Browsers, console_server: Server
) -> None:
    subscribe(console_server, handshake(console_server), "/secure/x")
    tab = open_console(browsers, console_server)
    page = tab.page
    requests: list[Request] = []
    # a lambda: Playwright cannot wrap a builtin method as a handler
    page.on("request", lambda request: requests.append(request))  # noqa: PLW0108
    sign_in(tab)
    expect(page.locator("#status")).to_have_text("live")
    for view in ("channels", "clients", "publish", "overview"):
        show(tab, view)
        page.wait_for_timeout(600)
    show(tab, "publish")
    page.fill("#publish-channel", "/secure/x")
    page.click("#publish")
    expect(page.locator("#tail li")).to_have_count(1)
    admin_calls = [r for r in requests if f"{console_server.origin}{ADMIN}/" in r.url]
    kinds = {r.url.split(ADMIN, 1)[1].split("?")[0] for r in admin_calls}
    assert {"/stats", "/channels", "/clients", "/publish", "/tail-ticket"} <= kinds, kinds
    for request in admin_calls:
        assert request.headers.get("authorization") == f"Bearer {TOKEN}", request.url
    for request in requests:
        assert TOKEN not in request.url
        assert TOKEN not in (request.post_data or ""), request.url
        if f"{ADMIN}/" not in request.url:
            assert "authorization" not in request.headers, request.url
    stored = page.evaluate(
        "() => [localStorage.length, sessionStorage.length, document.cookie, location.href,"
        " history.length, document.documentElement.outerHTML]"
    )
    assert stored[:3] == [0, 0, ""]
    assert TOKEN not in stored[3]
    assert TOKEN not in stored[5]  # not even in the form's field
    assert page.context.cookies() == []
    assert TOKEN not in console_server.log_tail(1_000_000)


def test_without_the_token_the_page_is_refused_and_shows_nothing(
    browsers: Browsers, console_server: Server
) -> None:
    client_id = handshake(console_server)
    subscribe(console_server, client_id, "/refused/x")
    tab = open_console(browsers, console_server)
    page = tab.page
    before: list[str] = []
    page.on("request", lambda request: before.append(request.url))
    page.wait_for_timeout(500)
    # Nothing is asked of the admin API before the operator signs in.
    assert not [url for url in before if f"{ADMIN}/" in url], before
    sign_in(tab)
    show(tab, "clients")
    expect(page.locator(f'#clients button[data-id="{client_id}"]')).to_be_visible()

    # From now on the admin API's answers come back as they would without
    # the token (the header stripped on its way out): the page signs out
    # and clears what it showed.
    def strip(route: Route) -> None:
        headers = {k: v for k, v in route.request.headers.items() if k.lower() != "authorization"}
        route.continue_(headers=headers)

    page.route(f"**{ADMIN}/**", strip)
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin-error")).to_contain_text("The server refused the token")
    expect(page.locator("#app")).to_be_hidden()
    assert client_id not in page.content()
    # Every data call and action is refused without it.
    for method, path, body in (
        ("GET", "/stats", None),
        ("GET", "/clients?q=", None),
        ("GET", "/channels?summary=1", None),
        ("POST", "/tail-ticket", {}),
        ("POST", "/publish", {"channel": "/refused/x", "data": 1}),
        ("DELETE", f"/clients/{client_id}", None),
    ):
        assert admin(console_server, method, path, body, token=None)[0] == 401
        assert admin(console_server, method, path, body, token="wrong-token-000000000")[0] == 403
    assert admin(console_server, "GET", f"/clients/{client_id}")[0] == 200


# ------------------------------------------------------------ screenshot


def take_console_screenshot(
    browsers: Browsers, server: Server, output: Path, *, seconds: float = 3.0
) -> None:
    """The overview of a chat server with some traffic, for docs/console.png.

    ``server`` serves the chat demo (``CHAT_ARGS``): four chat pages join two
    rooms, and a backend publishes to the rooms at a rate that rises and falls
    for ``seconds``.
    """
    rooms = ("lobby", "python")
    for number, name in enumerate(("Alice", "Bob", "Carol", "Dave")):
        open_chat(browsers, server, room=rooms[number % 2], name=name)
    tab = signed_in(browsers, server)
    deadline = time.monotonic() + seconds
    for n in range(int(seconds * 40) + 1):
        now = time.monotonic()
        if now > deadline:
            break
        server.publish(f"/chat/{rooms[n % 2]}", {"name": "backend", "text": f"update {n}"})
        time.sleep(0.06 + 0.05 * math.sin(now / 4))
    expect(tab.page.locator("#spark-deliveries polyline")).to_have_count(1)
    tab.page.wait_for_timeout(1200)
    tab.page.screenshot(path=str(output))


def test_screenshot_of_the_console(browsers: Browsers, tmp_path: Path, shots: Path) -> None:
    output = shots / "docs-console.png"
    with running(start_server(tmp_path, console_args(tmp_path, *CHAT_ARGS))) as server:
        take_console_screenshot(browsers, server, output, seconds=2.0)
    assert output.read_bytes().startswith(PNG_SIGNATURE)


def test_operations_md_shows_the_committed_screenshot() -> None:
    assert DOCS_SCREENSHOT.read_bytes().startswith(PNG_SIGNATURE)
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert "](console.png)" in operations


def main(argv: Sequence[str]) -> int:
    output = Path(argv[0]) if argv else DOCS_SCREENSHOT
    with tempfile.TemporaryDirectory() as folder:
        log_dir = Path(folder)
        args = console_args(log_dir, *CHAT_ARGS)
        with running(start_server(log_dir, args)) as server, launch_chromium() as browser:
            browsers = Browsers(browser)
            try:
                take_console_screenshot(browsers, server, output, seconds=40.0)
            finally:
                browsers.close()
    print(f"saved {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
