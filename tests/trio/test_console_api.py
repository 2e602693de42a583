"""The operator's console, server side (issue 19): its page, the admin API's
new answers and the tail's tickets, over loopback sockets.

The page itself (console.js) and its Chromium tests are in
tests/browser/test_console.py; the Redis node list in
tests/redis/test_console_nodes.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from bayeux_core import (
    ChannelRule,
    Disconnected,
    DisconnectReason,
    EngineConfig,
    Extension,
    Handshaken,
    Message,
    MessageContext,
    OverflowPolicy,
    QueueOverflow,
    SessionExpired,
)
from bayeux_trio import AsyncExtension, BayeuxServer, ServerConfig
from bayeux_trio.access import AccessSettings, TokenFileSettings, install
from bayeux_trio.cli._config_file import load_config_file
from bayeux_trio.cli._main import _config, _parser, _parsers, _prepare
from bayeux_trio.ops._console import (
    CONSOLE_MARK,
    INVALID_TICKET,
    ConsoleGate,
    ConsoleTickets,
)
from bayeux_trio.ops._stats import PEER, ClientLog, History
from tests._support.waiting import eventually
from tests.client.support import client

from .helpers import (
    HANDSHAKE,
    LongPoller,
    Response,
    WsClient,
    bayeux,
    deliveries,
    fail_after,
    make_config,
    start_server,
)
from .test_admin import call

TOKEN = "console-admin-token-0123456789"
AUTH = [("authorization", f"Bearer {TOKEN}")]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PAGES = {
    "/console": "text/html; charset=utf-8",
    "/console/": "text/html; charset=utf-8",
    "/console/console.js": "text/javascript; charset=utf-8",
    "/console/console.css": "text/css; charset=utf-8",
}


def console_config(**kwargs: Any) -> ServerConfig:
    return make_config(admin_path="/admin", admin_token=TOKEN, console_path="/console", **kwargs)


async def api(
    server: BayeuxServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: list[tuple[str, str]] = AUTH,
) -> Response:
    """An admin API call with this suite's token (the admin suite's helper)."""
    return await call(server, method, path, body, headers=headers)


async def get(server: BayeuxServer, path: str) -> Any:
    response = await api(server, "GET", path)
    assert response.status == 200, (path, response.status, response.body)
    return response.json()


async def ticket(server: BayeuxServer) -> str:
    response = await api(server, "POST", "/admin/tail-ticket")
    assert response.status == 200, response.body
    answer = response.json()
    assert answer["expires_in"] == 60
    assert isinstance(answer["ticket"], str)
    return str(answer["ticket"])


async def handshake_with(server: BayeuxServer, ext: Any) -> dict[str, Any]:
    assert server.port is not None
    (reply,) = await bayeux(server.port, [{**HANDSHAKE, "ext": ext}])
    return reply


async def subscribe(server: BayeuxServer, client_id: str, channel: str) -> dict[str, Any]:
    assert server.port is not None
    (reply,) = await bayeux(
        server.port,
        [{"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}],
    )
    return reply


class Users(Extension):
    """Names a session by its handshake's ``ext.user`` (as an auth extension would)."""

    outgoing_deliveries = False

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        if message.get("channel") == "/meta/handshake" and type(ext) is dict and "user" in ext:
            context.user = ext["user"]
        return message


class Seen(Extension):
    """Records every incoming message's ext (what a later extension sees)."""

    outgoing_deliveries = False

    def __init__(self) -> None:
        self.exts: list[Any] = []

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        self.exts.append(message.get("ext"))
        return message


class NoSubscribes(Extension):
    """Refuses every subscribe (an application's own rule)."""

    outgoing_deliveries = False

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/subscribe":
            message["error"] = "403::No subscribing here"
        return message


class AsyncGuard(AsyncExtension):
    """An async extension that refuses subscribes and records what it saw."""

    def __init__(self) -> None:
        self.exts: list[Any] = []

    async def incoming(self, message: Message, request: object) -> Message | None:
        self.exts.append(message.get("ext"))
        if message.get("channel") == "/meta/subscribe":
            message["error"] = "403::Not from here"
        return message


# ------------------------------------------------------------------ config


def test_console_path_needs_the_admin_api_and_a_path_of_its_own() -> None:
    with pytest.raises(ValueError, match="console_path needs admin_path"):
        ServerConfig(console_path="/console")
    for path in ("console", "/console/", "/faye", "/admin", "/health", "/faye/console"):
        with pytest.raises(ValueError, match="console_path"):
            ServerConfig(admin_path="/admin", admin_token=TOKEN, console_path=path)
    for path in ("/admin/console", "/ops"):
        admin = "/ops/admin" if path == "/ops" else "/admin"
        with pytest.raises(ValueError, match="under one another"):
            ServerConfig(admin_path=admin, admin_token=TOKEN, console_path=path)
    assert ServerConfig().console_path is None
    config = ServerConfig(admin_path="/admin", admin_token=TOKEN, console_path="/console")
    assert config.console_path == "/console"


def test_cli_console_path_and_its_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    parser, _ = _parsers()
    assert _config(parser.parse_args(["serve"])).console_path is None
    args = parser.parse_args(["serve", "--console-path", "/console"])
    with pytest.raises(SystemExit) as exited:
        _prepare(args, parser, {}, parser.error)
    assert exited.value.code == 2
    assert "console_path needs admin_path" in capsys.readouterr().err


def test_cli_console_path_with_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAYEUX_ADMIN_TOKEN", TOKEN)
    args = _parser().parse_args(
        ["serve", "--admin-path", "/admin", "--console-path", "/ops/console"]
    )
    assert _config(args).console_path == "/ops/console"


def test_config_file_sets_console_path(tmp_path: Path) -> None:
    _, serve = _parsers()
    path = tmp_path / "bayeux.toml"
    path.write_text('admin-path = "/admin"\nconsole-path = "/console"\n')
    loaded = load_config_file(path, serve)
    assert loaded.options["console_path"] == "/console"


# ------------------------------------------------------------------ the page


@fail_after(10)
async def test_the_page_is_static_locked_down_and_holds_no_data(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, console_config())
    before = {path: (await api(server, "GET", path, headers=[])).body for path in PAGES}
    # Some state that a page holding data would show.
    poller = LongPoller(server.port or 0)
    await poller.start("/secret/room")
    for path, content_type in PAGES.items():
        response = await api(server, "GET", path, headers=[("origin", "http://evil.example")])
        assert response.status == 200, path
        assert response.header("content-type") == content_type
        assert response.header("cache-control") == "no-store"
        assert response.header("content-security-policy") == CSP
        assert response.header("x-content-type-options") == "nosniff"
        assert response.header("referrer-policy") == "no-referrer"
        assert not {n for n in response.header_names() if n.startswith("access-control-")}
        assert response.body == before[path]
        assert poller.client_id.encode() not in response.body
        assert b"/secret/room" not in response.body
        assert TOKEN.encode() not in response.body
        head = await api(server, "HEAD", path, headers=[])
        assert head.status == 200
    page = before["/console/"]
    assert b'src="console.js"' in page
    # Without the slash, the page's relative URLs still name the console's files.
    bare = before["/console"]
    assert b'src="console/console.js"' in bare
    assert b'href="console/console.css"' in bare
    assert b'src="console.js"' not in bare
    for method, path, status in [
        ("POST", "/console/", 405),
        ("DELETE", "/console/console.js", 405),
        ("GET", "/console/index.html.bak", 404),
        ("GET", "/console/../admin/stats", 404),
        ("GET", "/console/x/console.js", 404),
    ]:
        response = await api(server, method, path, headers=[])
        assert response.status == status, (method, path)
        assert response.header("content-security-policy") == CSP
        assert b"clients" not in response.body


@fail_after(10)
async def test_no_console_without_the_option(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(admin_path="/admin", admin_token=TOKEN))
    assert (await api(server, "GET", "/console/", headers=[])).status == 404
    refused = await api(server, "POST", "/admin/tail-ticket")
    assert refused.status == 404
    assert "console" in refused.json()["error"]
    # No history without the console, but the rest of /stats is there.
    stats = await get(server, "/admin/stats")
    assert stats["history"] == []
    assert stats["totals"]["publishes"] == 0


# ------------------------------------------------------------------ the token


@fail_after(10)
async def test_every_data_call_and_action_needs_the_token(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, console_config())
    poller = LongPoller(server.port or 0)
    await poller.start("/x")
    calls = [
        ("GET", "/admin/stats", None),
        ("GET", "/admin/clients", None),
        ("GET", "/admin/clients?q=a&limit=5", None),
        ("GET", f"/admin/clients/{poller.client_id}", None),
        ("GET", "/admin/channels", None),
        ("GET", "/admin/channels?summary=1&q=x", None),
        ("GET", "/admin/presence?channel=/x", None),
        ("POST", "/admin/tail-ticket", None),
        ("POST", "/admin/publish", {"channel": "/x", "data": 1}),
        ("DELETE", f"/admin/clients/{poller.client_id}", None),
    ]
    wrong = [("authorization", "Bearer " + "x" * len(TOKEN))]
    basic = [("authorization", f"Basic {TOKEN}")]
    for method, path, body in calls:
        for headers, status in (([], 401), (basic, 401), (wrong, 403)):
            response = await api(server, method, path, body, headers=headers)
            assert response.status == status, (method, path, headers)
            assert set(response.json()) == {"error"}
        # A token in the URL is not a token.
        sep = "&" if "?" in path else "?"
        for name in ("token", "access_token"):
            response = await api(server, method, f"{path}{sep}{name}={TOKEN}", body, headers=[])
            assert response.status == 401, (method, path, name)
    assert server.ops is not None
    assert server.ops.tickets is not None
    assert len(server.ops.tickets) == 0  # no ticket was issued
    assert server.client(poller.client_id) is not None  # nor the client kicked
    assert server.ops.totals is not None
    assert server.ops.totals.publishes == 0  # nor anything published


# ------------------------------------------------------------------ /stats


@fail_after(20)
async def test_stats_match_the_state_after_a_scripted_load(nursery: trio.Nursery) -> None:
    clients, publishes = 4, 6
    server = await start_server(nursery, console_config())
    assert server.port is not None
    url = f"http://127.0.0.1:{server.port}/faye"
    # One refused message: an error reply by code.
    (unknown,) = await bayeux(
        server.port,
        [{"channel": "/meta/connect", "clientId": "nope", "connectionType": "long-polling"}],
    )
    assert unknown["successful"] is False
    received = [0] * clients
    async with trio.open_nursery() as load:
        opened = []
        for _ in range(clients):
            opened.append(await load.start(_websocket_client, url))
        subscriptions = []
        for n, bayeux_client in enumerate(opened):

            def count(_: object, n: int = n) -> None:
                received[n] += 1

            subscription = bayeux_client.subscribe("/load/room", count)
            await subscription
            subscriptions.append(subscription)
        for number in range(publishes):
            await opened[0].publish("/load/room", {"n": number})
        await eventually(lambda: received == [publishes] * clients)

        stats = await get(server, "/admin/stats")
        engine = server.engine
        sessions = list(engine.store)
        assert stats["node"]
        assert isinstance(stats["node"], str)
        assert stats["engine"] == "memory"
        assert stats["mount"] == "/faye"
        assert stats["admin_path"] == "/admin"
        assert stats["started"] <= stats["time"]
        assert stats["uptime"] >= 0
        assert stats["connections"]["websocket"] == clients
        assert set(stats["connections"]) == {"websocket", "eventsource", "http"}
        assert stats["sessions"] == clients == len(sessions)
        assert stats["subscriptions"] == clients
        assert stats["channels"] == 1
        assert stats["held_connects"] == sum(s.held is not None for s in sessions)
        assert stats["queued"] == sum(len(s.queue) for s in sessions) == 0
        assert stats["rss_bytes"] > 1_000_000
        totals = stats["totals"]
        assert totals["publishes"] == publishes
        assert totals["deliveries"] == publishes * clients == server.hub.delivered
        assert totals["handshakes"] == clients
        assert totals["overflows"] == 0
        assert totals["errors"] == {"401": 1} == engine.error_counts
        assert stats["nodes"] is None

        # The history: one sample a second, rates of what happened meanwhile.
        assert server.ops is not None
        assert server.ops.history is not None
        await eventually(lambda: len(server.ops.history.samples) >= 1, seconds=5)  # type: ignore[union-attr]
        for number in range(publishes):
            await opened[0].publish("/load/room", {"again": number})
        await eventually(lambda: received == [2 * publishes] * clients)

        def busy() -> bool:
            assert server.ops is not None
            assert server.ops.history is not None
            return any(sample[1] > 0 for sample in server.ops.history.samples)

        await eventually(busy, seconds=5)
        history = (await get(server, "/admin/stats"))["history"]
        assert history
        for stamp, publish_rate, delivery_rate in history:
            assert abs(stamp - stats["time"]) < 60
            assert publish_rate >= 0
            assert delivery_rate >= 0
        assert [sample[0] for sample in history] == sorted(sample[0] for sample in history)
        assert any(sample[1] > 0 and sample[2] > 0 for sample in history)
        load.cancel_scope.cancel()


async def _websocket_client(url: str, task_status: trio.TaskStatus[Any]) -> None:
    async with client(url, "websocket") as opened:
        await opened.wait_connected()
        task_status.started(opened)
        await trio.sleep_forever()


def test_history_rates_are_per_second_since_the_last_sample() -> None:
    history = History(size=3)
    history.sample(10, 100, now=50.0, wall=1000.0)
    assert history.as_list() == []  # the first sample is the baseline
    history.sample(14, 120, now=52.0, wall=1002.0)
    history.sample(14, 120, now=52.0, wall=1002.0)  # no time passed: no sample
    history.sample(17, 150, now=53.0, wall=1003.0)
    assert history.as_list() == [[1002.0, 2.0, 10.0], [1003.0, 3.0, 30.0]]
    for second in range(4, 8):
        history.sample(17, 150, now=50.0 + second, wall=1000.0 + second)
    assert [s[0] for s in history.as_list()] == [1005.0, 1006.0, 1007.0]  # the last three


@fail_after(10)
async def test_stats_count_queue_overflows(nursery: trio.Nursery) -> None:
    engine = EngineConfig(timeout=30, max_queue=2, overflow=OverflowPolicy.DROP_OLDEST)
    server = await start_server(nursery, console_config(engine=engine))
    dropped: list[int] = []
    server.on(QueueOverflow, lambda event: dropped.append(event.dropped))
    poller = LongPoller(server.port or 0)
    await poller.start("/flood")
    for number in range(5):
        server.publish("/flood", number)
    replies = await poller.connect()
    assert [d["data"] for d in deliveries(replies)] == [3, 4]
    await eventually(lambda: sum(dropped) == 3)
    stats = await get(server, "/admin/stats")
    assert stats["totals"]["overflows"] == 3
    assert stats["totals"]["publishes"] == 5  # the server's own publishes count too

    ended = EngineConfig(timeout=30, max_queue=2, overflow=OverflowPolicy.DISCONNECT)
    strict = await start_server(nursery, console_config(engine=ended))
    poller = LongPoller(strict.port or 0)
    await poller.start("/flood")
    for number in range(3):
        strict.publish("/flood", number)
    await eventually(lambda: not strict.clients())
    assert (await get(strict, "/admin/stats"))["totals"]["overflows"] == 1


# ------------------------------------------------------------------ /clients


@fail_after(15)
async def test_clients_search_by_id_user_or_address(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, console_config(), extensions=[Users()])
    assert server.port is not None
    ids = {}
    for user in ("alice", "alfred", "bob"):
        (reply,) = await bayeux(server.port, [{**HANDSHAKE, "ext": {"user": user}}])
        ids[user] = reply["clientId"]
        (connected,) = await bayeux(
            server.port,
            [
                {
                    "channel": "/meta/connect",
                    "clientId": reply["clientId"],
                    "connectionType": "long-polling",
                }
            ],
        )
        assert connected["successful"] is True
    anonymous = LongPoller(server.port)
    await anonymous.start("/a")

    everyone = await get(server, "/admin/clients")
    assert everyone["total"] == 4
    assert len(everyone["clients"]) == 4
    by_id = {c["id"]: c for c in everyone["clients"]}
    for user, client_id in ids.items():
        info = by_id[client_id]
        assert info["user"] == user
        host, _, port = info["address"].rpartition(":")
        assert host == "127.0.0.1"
        assert 0 < int(port) < 65536
        assert 0 <= info["age"] < 60
        assert {
            "id",
            "state",
            "connection",
            "held",
            "subscriptions",
            "queued",
            "expires_in",
        } <= set(info)
    assert by_id[anonymous.client_id]["user"] is None
    assert by_id[anonymous.client_id]["subscriptions"] == ["/a"]
    # The server's own listing says the same.
    assert {c["id"]: c["user"] for c in server.clients()} == {
        c["id"]: c["user"] for c in everyone["clients"]
    }

    async def search(query: str) -> tuple[set[str], int]:
        answer = await get(server, f"/admin/clients?{query}")
        return {c["id"] for c in answer["clients"]}, answer["total"]

    assert await search("q=al") == ({ids["alice"], ids["alfred"]}, 2)  # user prefix
    assert await search("q=bob") == ({ids["bob"]}, 1)  # exact user
    prefix = anonymous.client_id[:6]
    found, total = await search(f"q={prefix}")
    assert anonymous.client_id in found
    assert total == len(found)
    assert await search("q=127.0.0") == (set(by_id), 4)  # address substring
    assert await search("q=zzz-nobody") == (set(), 0)
    found, total = await search("q=al&limit=1")
    assert len(found) == 1
    assert total == 2
    found, total = await search("limit=2")
    assert len(found) == 2
    assert total == 4
    for bad in ("limit=0", "limit=1001", "limit=abc", "q=a&limit=-1"):
        response = await api(server, "GET", f"/admin/clients?{bad}")
        assert response.status == 400, bad
        assert "limit" in response.json()["error"]
    # A large limit is fine, up to the maximum.
    assert (await search("limit=1000"))[1] == 4


@fail_after(15)
async def test_a_client_address_is_its_last_connection(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, console_config())
    assert server.port is not None
    # Handshake over HTTP, then connect over a WebSocket: the address shown is
    # the WebSocket's (this side's local port), not the handshake's.
    poller = LongPoller(server.port)
    await poller.handshake()
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json([poller.connect_message(connectionType="websocket")])
        (reply,) = await ws.receive_json()
        assert reply["successful"] is True, reply
        host, port = ws.stream.socket.getsockname()[:2]
        info = (await get(server, "/admin/clients"))["clients"][0]
        assert info["id"] == poller.client_id
        assert info["connection"] == "websocket"
        assert info["address"] == f"{host}:{port}"
        assert (await get(server, f"/admin/clients/{poller.client_id}"))["address"] == (
            f"{host}:{port}"
        )
        assert (await get(server, f"/admin/clients?q={port}"))["total"] == 1


# ------------------------------------------------------------------ /channels


@fail_after(15)
async def test_channel_summary_busiest_first_with_presence(nursery: trio.Nursery) -> None:
    engine = EngineConfig(timeout=30, presence=("/room/*",))
    server = await start_server(nursery, console_config(engine=engine), extensions=[Users()])
    assert server.port is not None
    plan = {"/news": 3, "/room/a": 2, "/sport/*": 1}
    for channel, count in plan.items():
        for n in range(count):
            (reply,) = await bayeux(server.port, [{**HANDSHAKE, "ext": {"user": f"u{n}"}}])
            answer = await subscribe(server, reply["clientId"], channel)
            assert answer["successful"] is True, answer
    # Joined: presence members come with a subscription to the presence channel.
    members = len(server.presence("/room/a"))

    old = await get(server, "/admin/channels")
    assert set(old) == {"channels"}
    assert {k: len(v) for k, v in old["channels"].items()} == plan

    summary = await get(server, "/admin/channels?summary=1")
    assert summary["total"] == 3
    assert summary["channels"] == [
        {"channel": "/news", "subscribers": 3, "presence": False, "members": None},
        {"channel": "/room/a", "subscribers": 2, "presence": True, "members": members},
        {"channel": "/sport/*", "subscribers": 1, "presence": False, "members": None},
    ]
    limited = await get(server, "/admin/channels?summary=1&limit=1")
    assert [c["channel"] for c in limited["channels"]] == ["/news"]
    assert limited["total"] == 3
    searched = await get(server, "/admin/channels?summary=1&q=ROOM")
    assert [c["channel"] for c in searched["channels"]] == ["/room/a"]
    assert searched["total"] == 1
    nothing = await get(server, "/admin/channels?summary=1&q=nope")
    assert nothing == {"channels": [], "total": 0}
    assert (await api(server, "GET", "/admin/channels?summary=1&limit=x")).status == 400


# ------------------------------------------------------------------ tickets


def gate_open(server: BayeuxServer) -> bool:
    return server._gate_open


def _write_tokens(tmp_path: Path) -> TokenFileSettings:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"carol": "carol-token-0123456789"}))
    return TokenFileSettings(file=tokens)


async def _console_with_rules(
    nursery: trio.Nursery, tmp_path: Path, **settings: Any
) -> tuple[BayeuxServer, Seen]:
    seen = Seen()
    server = BayeuxServer(console_config(), extensions=[seen])
    install(
        server,
        AccessSettings(
            rules=(
                ChannelRule("/private/**", subscribe="nobody", publish="server"),
                ChannelRule("/locked", publish="nobody"),
            ),
            **settings,
        ),
    )
    await nursery.start(server.serve)
    return server, seen


@fail_after(15)
async def test_a_ticket_session_tails_a_channel_the_rules_refuse(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server, seen = await _console_with_rules(nursery, tmp_path)
    assert server.port is not None
    # A normal client may not subscribe to the private channel.
    normal = LongPoller(server.port)
    await normal.handshake()
    refused = await subscribe(server, normal.client_id, "/private/orders")
    assert refused["successful"] is False
    assert refused["error"].startswith("403")

    good = await ticket(server)
    reply = await handshake_with(server, {"consoleTicket": good, "other": 1})
    assert reply["successful"] is True, reply
    tail = reply["clientId"]
    # The ticket went no further than the gate: later extensions saw the rest.
    assert {"other": 1} in seen.exts
    assert not any(type(e) is dict and "consoleTicket" in e for e in seen.exts)
    session = server.engine.store.get(tail)
    assert session is not None
    assert session.access == {CONSOLE_MARK: True}

    for channel in ("/private/orders", "/private/**"):
        answer = await subscribe(server, tail, channel)
        assert answer["successful"] is True, answer
    # Not /meta/**: the engine still refuses that.
    meta = await subscribe(server, tail, "/meta/**")
    assert meta["successful"] is False
    # The tail receives what is published there.
    poller = LongPoller(server.port)
    poller.client_id = tail
    await poller.connect()
    server.publish("/private/orders", {"order": 1})
    received = deliveries(await poller.connect())
    assert [d["data"] for d in received] == [{"order": 1}]
    # No other privilege: its publishes go through the rules as anyone's.
    for channel in ("/locked", "/private/orders"):
        published = await poller.publish(channel, {"from": "console"})
        assert published["successful"] is False, channel
    open_publish = await poller.publish("/public", {"from": "console"})
    assert open_publish["successful"] is True


@fail_after(15)
async def test_bad_tickets_are_refused(nursery: trio.Nursery, tmp_path: Path) -> None:
    server, _ = await _console_with_rules(nursery, tmp_path)
    assert server.ops is not None
    assert server.ops.tickets is not None
    tickets = server.ops.tickets

    used = await ticket(server)
    assert (await handshake_with(server, {"consoleTicket": used}))["successful"] is True
    stale = await ticket(server)
    other = await ticket(server)
    assert other != stale
    assert len(stale) >= 22
    assert set(stale) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    clock = tickets.clock
    tickets.clock = lambda: clock() + 61
    try:
        expired = await handshake_with(server, {"consoleTicket": stale})
    finally:
        tickets.clock = clock
    for reply in (
        await handshake_with(server, {"consoleTicket": used}),  # reused
        expired,
        await handshake_with(server, {"consoleTicket": "not-a-ticket-we-issued"}),
        await handshake_with(server, {"consoleTicket": 12345}),
        await handshake_with(server, {"consoleTicket": None}),
    ):
        assert reply["successful"] is False, reply
        assert reply["error"] == INVALID_TICKET
        assert reply["advice"]["reconnect"] == "none"
        assert "clientId" not in reply
    # An expired ticket is gone for good, even once the clock is back.
    assert (await handshake_with(server, {"consoleTicket": stale}))["successful"] is False
    # A good one still works.
    assert (await handshake_with(server, {"consoleTicket": other}))["successful"] is True
    assert len(tickets) == 0


@fail_after(15)
async def test_a_ticket_gets_past_an_authenticated_handshake_and_extensions(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    guard = AsyncGuard()
    server = BayeuxServer(console_config(), extensions=[NoSubscribes(), guard])
    install(server, AccessSettings(handshake="authenticated", tokens=_write_tokens(tmp_path)))
    server.add_extension(Users())  # added later: the gate still runs last
    await nursery.start(server.serve)
    plain = await handshake_with(server, {})
    assert plain["successful"] is False
    assert plain["error"].startswith("401")
    carol = await handshake_with(server, {"authToken": "carol-token-0123456789"})
    assert carol["successful"] is True, carol
    assert (await subscribe(server, carol["clientId"], "/x"))["successful"] is False

    # Until a ticket is asked for, no message goes through the console's gate.
    assert not gate_open(server)
    good = await ticket(server)
    assert gate_open(server)
    server.add_extension(NoSubscribes())  # added after the gate opened: still inside it
    reply = await handshake_with(server, {"consoleTicket": good})
    assert reply["successful"] is True, reply
    answer = await subscribe(server, reply["clientId"], "/x")
    assert answer["successful"] is True, answer
    # The extensions kept their order around it: carol's subscribe is still refused.
    assert (await subscribe(server, carol["clientId"], "/y"))["successful"] is False
    # The async extension never saw the ticket, nor the tail's subscribe.
    assert not any(type(e) is dict and "consoleTicket" in e for e in guard.exts)
    assert len(guard.exts) == 4  # plain's and carol's handshakes, carol's subscribes


def test_the_gate_keeps_a_console_session_mark_beside_other_access_data() -> None:
    tickets = ConsoleTickets()
    gate = ConsoleGate(tickets)
    good = tickets.issue()
    message: dict[str, Any] = {"channel": "/meta/handshake", "ext": {"consoleTicket": good}}
    context = MessageContext(0.0)
    assert gate.before(message, context) is message
    assert "ext" not in message
    context.access = {"exp": 5}  # another extension's data
    gate.after(message, context)
    assert context.access == {"exp": 5, CONSOLE_MARK: True}
    # A subscribe from another session is left to the others' verdict.
    subscribe = {"channel": "/meta/subscribe", "clientId": "b", "subscription": "/x"}
    gate.before(subscribe, MessageContext(0.0, "a", access=context.access))
    subscribe["error"] = "403::no"
    gate.after(subscribe, MessageContext(0.0, "b"))
    assert subscribe["error"] == "403::no"


def test_the_client_log_keeps_age_and_address_and_forgets_who_left() -> None:
    alive = {"a", "b", "c"}
    now = [10.0]
    seen = ClientLog(alive.__contains__, clock=lambda: now[0])
    token = PEER.set("10.0.0.1:4000")
    try:
        seen(Handshaken("a"))
        seen(Handshaken("c"))
        seen.note("b")  # taken over from another node: no handshake seen here
        seen.note("nobody")  # no such session: not kept
        seen.note(None)
    finally:
        PEER.reset(token)
    now[0] = 12.5
    assert seen.age("a") == 2.5
    assert seen.address("a") == "10.0.0.1:4000"
    assert seen.age("b") is None
    assert seen.address("b") == "10.0.0.1:4000"
    assert len(seen) == 3
    seen.note("a")  # a batch from elsewhere (no connection: in-process)
    assert seen.address("a") is None
    seen(Disconnected("a", DisconnectReason.CLIENT))
    seen(SessionExpired("c"))
    assert (seen.age("a"), seen.age("c"), len(seen)) == (None, None, 1)
    alive.clear()  # "b" moved away without an event
    seen.prune()
    assert len(seen) == 0
