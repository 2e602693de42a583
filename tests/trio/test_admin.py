"""The admin API and the server-side control methods, over loopback sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from bayeux_core import (
    ClientState,
    Disconnected,
    DisconnectReason,
    SessionEnded,
    Unsubscribed,
)
from bayeux_trio import BayeuxServer, ServerConfig, SubscribeError
from bayeux_trio.cli._main import _config, _parser
from tests._support.waiting import eventually
from tests.client.support import Recorder, client

from .helpers import (
    LongPoller,
    Response,
    WsClient,
    deliveries,
    fail_after,
    make_config,
    request,
    start_server,
)

TOKEN = "s3cret-admin-token-0123456789"
AUTH = [("authorization", f"Bearer {TOKEN}")]


def admin_config(**kwargs: Any) -> ServerConfig:
    return make_config(admin_path="/admin", admin_token=TOKEN, **kwargs)


async def call(
    server: BayeuxServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: list[tuple[str, str]] = AUTH,
) -> Response:
    assert server.port is not None
    data = b"" if body is None else orjson.dumps(body)
    return await request(server.port, method, path, headers=headers, body=data)


# ------------------------------------------------------------------ config


def test_admin_path_needs_a_long_token() -> None:
    with pytest.raises(ValueError, match="admin_token"):
        ServerConfig(admin_path="/admin")
    with pytest.raises(ValueError, match="admin_token"):
        ServerConfig(admin_path="/admin", admin_token="short")
    assert TOKEN not in repr(ServerConfig(admin_path="/admin", admin_token=TOKEN))


@pytest.mark.parametrize("path", ["admin", "/admin/", "/faye", "/faye/admin", "/health", "/"])
def test_admin_path_must_not_clash(path: str) -> None:
    with pytest.raises(ValueError, match="admin_path"):
        ServerConfig(admin_path=path, admin_token=TOKEN, mount="/faye" if path != "/" else "/x/y")


def test_cli_reads_the_token_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = _parser()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = parser.parse_args(
        ["serve", "--admin-path", "/admin", "--admin-token-file", str(token_file)]
    )
    assert _config(args).admin_token == TOKEN
    monkeypatch.setenv("BAYEUX_ADMIN_TOKEN", "from-the-environment-123")
    args = parser.parse_args(["serve", "--admin-path", "/admin"])
    assert _config(args).admin_token == "from-the-environment-123"
    monkeypatch.delenv("BAYEUX_ADMIN_TOKEN")
    with pytest.raises(ValueError, match="BAYEUX_ADMIN_TOKEN"):
        _config(args)
    args = parser.parse_args(
        ["serve", "--admin-path", "/admin", "--admin-token-file", str(tmp_path / "none")]
    )
    with pytest.raises(ValueError, match="cannot read"):
        _config(args)
    assert _config(parser.parse_args(["serve"])).admin_path is None


# -------------------------------------------------------------------- auth


@fail_after(10)
async def test_admin_is_off_by_default(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert (await call(server, "GET", "/admin/clients")).status == 404


@fail_after(10)
async def test_authentication(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, admin_config())
    missing = await call(server, "GET", "/admin/clients", headers=[])
    assert missing.status == 401
    assert missing.header("www-authenticate") is not None
    assert missing.json() == {"error": "missing bearer token"}
    basic = await call(server, "GET", "/admin/clients", headers=[("authorization", "Basic eDp5")])
    assert basic.status == 401
    wrong = await call(
        server, "GET", "/admin/clients", headers=[("authorization", f"Bearer {TOKEN}x")]
    )
    assert wrong.status == 403
    # Every path under the admin prefix is guarded, even unknown ones.
    assert (await call(server, "GET", "/admin/nothing", headers=[])).status == 401
    ok = await call(
        server,
        "GET",
        "/admin/clients",
        headers=[*AUTH, ("origin", "http://evil.example")],
    )
    assert ok.status == 200
    assert ok.header("cache-control") == "no-store"
    # Never CORS: a page on another origin cannot read the answer.
    assert not {n for n in ok.header_names() if n.startswith("access-control")}
    preflight = await call(
        server,
        "OPTIONS",
        "/admin/clients",
        headers=[("origin", "http://evil.example"), ("access-control-request-method", "GET")],
    )
    assert preflight.status == 401
    assert not {n for n in preflight.header_names() if n.startswith("access-control")}


# ----------------------------------------------------------------- listing


@fail_after(10)
async def test_listing_clients_and_channels(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, admin_config())
    assert server.port is not None
    alice = LongPoller(server.port)
    await alice.start("/chat/*", "/news")
    bob = WsClient  # a WebSocket client, with a held connect
    async with await bob.connect(server.port) as ws:
        await ws.send_json(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["websocket"],
                }
            ]
        )
        (hs,) = await ws.receive_json()
        bob_id = hs["clientId"]
        await ws.send_json(
            [
                {"channel": "/meta/subscribe", "clientId": bob_id, "subscription": "/news"},
                {"channel": "/meta/connect", "clientId": bob_id, "connectionType": "websocket"},
            ]
        )
        await ws.receive_json()
        await ws.send_json(
            [{"channel": "/meta/connect", "clientId": bob_id, "connectionType": "websocket"}]
        )
        await eventually(lambda: (server.client(bob_id) or {}).get("held") is True)

        listed = await call(server, "GET", "/admin/clients")
        assert listed.status == 200
        by_id = {c["id"]: c for c in listed.json()["clients"]}
        assert set(by_id) == {alice.client_id, bob_id}
        assert by_id[alice.client_id]["subscriptions"] == ["/chat/*", "/news"]
        assert by_id[alice.client_id]["held"] is False
        assert by_id[alice.client_id]["connection"] is None
        assert by_id[bob_id]["connection"] == "websocket"
        assert by_id[bob_id]["subscriptions"] == ["/news"]
        assert by_id[bob_id]["expires_in"] > 0
        # The Python API says the same (but for the seconds left and the age, which move on).
        for info in server.clients():
            moving = {"expires_in": 0, "age": 0}
            assert {**info, **moving} == {**by_id[info["id"]], **moving}

        one = await call(server, "GET", f"/admin/clients/{alice.client_id}")
        assert one.json()["id"] == alice.client_id
        assert one.json()["queued"] == 0
        assert (await call(server, "GET", "/admin/clients/nobody")).status == 404

        channels = (await call(server, "GET", "/admin/channels")).json()["channels"]
        assert channels == {
            "/chat/*": [alice.client_id],
            "/news": sorted([alice.client_id, bob_id]),
        }
        assert channels == server.subscriptions()
        # A publish with nobody connected waits in alice's queue: the listing shows it.
        server.publish("/news", 1)
        assert server.client(alice.client_id)["queued"] == 1  # type: ignore[index]


@fail_after(10)
async def test_wrong_methods_and_paths(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, admin_config())
    for method, path, allow in [
        ("POST", "/admin/clients", "GET"),
        ("DELETE", "/admin/channels", "GET"),
        ("GET", "/admin/publish", "POST"),
        ("POST", "/admin/clients/x", "GET, DELETE"),
        ("GET", "/admin/clients/x/subscriptions/a", "DELETE"),
    ]:
        answer = await call(server, method, path)
        assert (answer.status, answer.header("allow")) == (405, allow), path
    for path in ["/admin", "/admin/", "/admin/clients/x/y", "/admin/other"]:
        assert (await call(server, "GET", path)).status == 404, path


# ----------------------------------------------------------------- publish


@fail_after(10)
async def test_publish(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, admin_config())
    assert server.port is not None
    alice = LongPoller(server.port)
    await alice.start("/news")
    answer = await call(server, "POST", "/admin/publish", {"channel": "/news", "data": {"n": 1}})
    assert answer.status == 200
    assert answer.json() == {"published": "/news"}
    got = deliveries(await alice.connect())
    assert got == [{"channel": "/news", "data": {"n": 1}}]
    for body, error in [
        (b"{", "body must be JSON"),
        (b"[]", "expected an object with a channel"),
        (b'{"channel": "/news"}', "expected data"),
    ]:
        bad = await request(server.port, "POST", "/admin/publish", headers=AUTH, body=body)
        assert (bad.status, bad.json()["error"]) == (400, error)
    meta = await call(server, "POST", "/admin/publish", {"channel": "/meta/x", "data": 1})
    assert meta.status == 400
    assert "/meta/x" in meta.json()["error"]


# -------------------------------------------------------------------- kick


@fail_after(20)
@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_kicked_python_client_stays_away(nursery: trio.Nursery, transport: str) -> None:
    server = await start_server(nursery, admin_config(timeout=30.0))
    ended: list[Disconnected] = []
    server.on(Disconnected, ended.append)
    async with client(server.url, transport) as alice:
        recorder = Recorder(alice)
        sub = await alice.subscribe("/news")
        await alice.wait_connected()
        client_id = alice.client_id
        assert client_id is not None
        # The next connect is held: the kick answers it with reconnect: none.
        await eventually(lambda: (server.client(client_id) or {}).get("held") is True)
        answer = await call(server, "DELETE", f"/admin/clients/{client_id}")
        assert answer.status == 200
        assert answer.json() == {"disconnected": client_id}
        with pytest.raises(SubscribeError):
            async for _ in sub:
                pass  # pragma: no cover - nothing is published
        assert alice.session.state is ClientState.DISCONNECTED
        assert recorder.count(SessionEnded) == 1
        assert ended == [Disconnected(client_id, DisconnectReason.SERVER)]
        # Final: the client made no new session.
        assert server.clients() == []
    assert (await call(server, "DELETE", f"/admin/clients/{client_id}")).status == 404


@fail_after(10)
async def test_kicked_client_between_connects_is_told_reconnect_none(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, admin_config())
    assert server.port is not None
    alice = LongPoller(server.port)
    await alice.start("/news")  # its first connect was answered: nothing is held
    assert server.disconnect(alice.client_id) is True
    assert server.disconnect(alice.client_id) is False
    (reply,) = await alice.send([alice.connect_message()])
    assert reply["successful"] is False
    assert reply["error"].startswith("401:")
    assert reply["advice"]["reconnect"] == "none"


# ------------------------------------------------------------- unsubscribe


@fail_after(10)
async def test_unsubscribe_a_client(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, admin_config())
    assert server.port is not None
    dropped: list[Unsubscribed] = []
    server.on(Unsubscribed, dropped.append)
    alice = LongPoller(server.port)
    await alice.start("/news/*", "/other")
    path = f"/admin/clients/{alice.client_id}/subscriptions/news/%2A"
    answer = await call(server, "DELETE", path)
    assert answer.status == 200, answer.body
    assert answer.json() == {"unsubscribed": "/news/*", "client": alice.client_id}
    assert dropped == [Unsubscribed(alice.client_id, "/news/*")]
    assert (await call(server, "DELETE", path)).status == 404
    assert (await call(server, "DELETE", "/admin/clients/nobody/subscriptions/x")).status == 404
    server.publish("/news/a", "not for alice")
    server.publish("/other", "for alice")
    assert deliveries(await alice.connect()) == [{"channel": "/other", "data": "for alice"}]
    # The Python API does the same.
    assert server.unsubscribe(alice.client_id, "/other") is True
    assert server.subscriptions() == {}
