"""Faye's security history (research/faye.md section 4), against a real server.

One test per row, named after it; the engine-level tests of the same rows are
in ``test_core_security.py``. Every test ends by checking that the server
still serves other clients.

Each row runs twice (issue 17): as Faye (no access control) and with channel
rules, a token registry, JWT and a backend secret installed. The rules close
channels no row uses, so each row's own assertions still hold; what the second
run shows is that access control opens none of the holes again.
"""

from __future__ import annotations

import functools
import json
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
import trio
import trustme
from wsproto.events import CloseConnection

from bayeux_core import ChannelRule, Extension, Message, MessageContext, TransportDown
from bayeux_trio import AsyncExtension, BayeuxServer, ServerConfig
from bayeux_trio.access import AccessSettings, JwtSettings, TokenFileSettings, install
from tests._support.ports import HOST
from tests._support.waiting import eventually
from tests.client.support import Recorder, client
from tests.client.test_tls import tls_proxy
from tests.trio.helpers import (
    HANDSHAKE,
    EventSourceReader,
    LongPoller,
    WsClient,
    bayeux,
    deliveries,
    fail_after,
    handshake,
    jsonp_target,
    make_config,
    parse_response,
    raw_exchange,
    request,
    start_server,
)

from .helpers import still_serving, ws_frame, ws_session

JSON = [("content-type", "application/json")]

# ------------------------------------------- the second run: rules and JWT on

JWT_SECRET = "faye-history-jwt-secret-of-40-bytes-0123"
BACKEND_SECRET = "faye-history-backend-secret"
#: closed channels that no row below subscribes or publishes to
RULES = (
    ChannelRule("/private/{a}/{b}", subscribe=("{a}", "{b}"), publish=("{a}", "{b}")),
    ChannelRule("/secret/**", subscribe="token", publish="server"),
    ChannelRule("/alerts/**", publish="server"),
)


def access_settings(directory: Path) -> AccessSettings:
    """Every identity source and the rules above, their files in ``directory``."""
    secret = directory / "jwt.secret"
    secret.write_text(JWT_SECRET)
    tokens = directory / "tokens.json"
    tokens.write_text(json.dumps({"alice": {"token": "alice-token"}, "bob": "bob-token"}))
    backend = directory / "backend.secret"
    backend.write_text(BACKEND_SECRET)
    return AccessSettings(
        rules=RULES,
        tokens=TokenFileSettings(file=tokens),
        jwt=JwtSettings(secret_file=secret),
        backend_secret_file=backend,
    )


@pytest.fixture(autouse=True, params=["faye", "rules+jwt"])
def access_mode(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Run the row as Faye, then again with access control installed."""
    mode: str = request.param
    if mode == "faye":
        return mode
    settings = access_settings(tmp_path)

    async def start_guarded_server(
        nursery: trio.Nursery,
        config: ServerConfig | None = None,
        *,
        extensions: Sequence[Extension | AsyncExtension] = (),
    ) -> BayeuxServer:
        # tests.trio.helpers.start_server, with install() before serving
        config = config if config is not None else make_config()
        server = BayeuxServer(config, extensions=extensions)
        install(server, settings)
        started: BayeuxServer = await nursery.start(server.serve)
        assert started is server
        assert server.port is not None
        return server

    monkeypatch.setattr(sys.modules[__name__], "start_server", start_guarded_server)
    return mode


@fail_after(10)
async def test_the_second_run_has_access_control_in_force(
    nursery: trio.Nursery, access_mode: str
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    client_id = await handshake(server.port)
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id}
    replies = await bayeux(
        server.port,
        [
            subscribe | {"subscription": "/private/alice/bob"},
            subscribe | {"subscription": "/public"},
            {"channel": "/alerts/all", "clientId": client_id, "data": 1},
        ],
    )
    closed = access_mode != "faye"
    assert [r["successful"] for r in replies] == [not closed, True, not closed]
    (reply,) = await bayeux(server.port, [{**HANDSHAKE, "ext": {"auth": {"token": "forged"}}}])
    assert reply["successful"] is not closed


# --------------------------------- 2013-01: remote calls through /meta/<name>


@pytest.mark.parametrize(
    "channel", ["/meta/process", "/meta/close", "/meta/constructor", "/meta/__proto__"]
)
@fail_after(10)
async def test_faye_2013_01_meta_method_names_are_403_over_http_and_websocket(
    nursery: trio.Nursery, channel: str
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    client_id = await handshake(server.port)
    message = {"channel": channel, "clientId": client_id, "subscription": "/x", "data": 1}
    (reply,) = await bayeux(server.port, [message])
    assert reply["error"] == f"403:{channel}:Forbidden channel"
    async with await WsClient.connect(server.port) as ws:
        await ws.send_json([message])
        (reply,) = await ws.receive_json()
        assert reply["error"] == f"403:{channel}:Forbidden channel"
    session = server.engine.store.get(client_id)
    assert session is not None
    assert session.subscriptions == set()
    assert len(server.engine.store) == 1
    await still_serving(server)


# ------------------------------- 2013-12: WebSocket DoS (faye-websocket 0.7.1)


@fail_after(10)
async def test_faye_2013_12_websocket_message_over_the_limit_closes_1009(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(max_ws_message=1000))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        await ws.send_text("[" + " " * 1001 + "]")
        close = await ws.expect_close()
        assert close.code == 1009
    assert len(server.engine.store) == 0
    await still_serving(server)


@fail_after(10)
async def test_faye_2013_12_websocket_declared_frame_length_is_not_trusted(
    nursery: trio.Nursery,
) -> None:
    """A header declaring 2**62 bytes allocates nothing: the payload is counted as it comes."""
    server = await start_server(nursery, make_config(max_ws_message=1000))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        header = ws_frame(1, b"", length=2**62)
        await ws.send_raw(header + b"\x00" * 4096)
        close = await ws.expect_close()
        assert close.code == 1009
    await still_serving(server)


@fail_after(10)
async def test_faye_2013_12_websocket_fragments_count_towards_the_limit(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(max_ws_message=1000))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        # 600 one-byte fragments of one message: no frame is large, the message is
        frames = ws_frame(1, b"[", fin=False)
        frames += b"".join(ws_frame(0, b" ", fin=False) for _ in range(1100))
        await ws.send_raw(frames)
        close = await ws.expect_close()
        assert close.code == 1009
    async with await WsClient.connect(server.port) as ws:
        # under the limit, a fragmented message is one message
        frames = ws_frame(1, b"[", fin=False)
        frames += b"".join(ws_frame(0, b" ", fin=False) for _ in range(100))
        frames += ws_frame(0, orjson.dumps(HANDSHAKE) + b"]")
        await ws.send_raw(frames)
        (reply,) = await ws.receive_json()
        assert reply["successful"] is True
    await still_serving(server)


# ----------------------------------------------------- 2014-07: Rosetta Flash


@pytest.mark.parametrize(
    "callback", ["42", "<script>", "CWSxyz", "FWS", "ZWSabc", "a-b", "a()", "a;b", ""]
)
@fail_after(10)
async def test_faye_2014_07_rosetta_flash_callbacks_are_400(
    nursery: trio.Nursery, callback: str
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    target = f"/faye?message={quote(orjson.dumps([HANDSHAKE]).decode())}&jsonp={quote(callback)}"
    response = await request(server.port, "GET", target)
    if callback == "":
        # Faye's default callback is used for an empty name, as with Faye.
        assert response.status == 200
        assert response.body.startswith(b"/**/jsonpcallback(")
    else:
        assert response.status == 400
        assert response.body == b"Bad request"
    assert len(server.engine.store) == (1 if callback == "" else 0)
    await still_serving(server)


@fail_after(10)
async def test_faye_2014_07_rosetta_flash_every_jsonp_header(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(server.port, "GET", jsonp_target([HANDSHAKE], "cwsOk"))
    assert response.status == 200
    assert response.body.startswith(b"/**/cwsOk(")  # the lower-case name is no SWF
    assert response.header("content-type") == "text/javascript; charset=utf-8"
    assert response.header("content-disposition") == "attachment; filename=f.txt"
    assert response.header("x-content-type-options") == "nosniff"
    assert response.header("cache-control") == "no-cache, no-store"


# ----------------------------------------- 2015-07: CORS preflight reflection


@fail_after(10)
async def test_faye_2015_07_cors_preflight_reflects_no_requested_headers_or_methods(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(
        server.port,
        "OPTIONS",
        "/faye",
        headers=[
            ("origin", "https://app.example"),
            ("access-control-request-method", "DELETE"),
            ("access-control-request-headers", "X-Evil, Cookie"),
        ],
    )
    assert response.status == 200
    assert response.header("access-control-allow-methods") == "POST, GET"
    allowed = response.header("access-control-allow-headers") or ""
    assert "x-evil" not in allowed.lower()
    assert "cookie" not in allowed.lower()
    assert response.header("access-control-max-age") == "86400"
    assert len(server.engine.store) == 0


# ------------------------------------------ 2015-12 (#417): message=1 crashed


@pytest.mark.parametrize("message", ["1", '"str"', "null", "[1]", "[null]", "true", "[[]]"])
@fail_after(10)
async def test_faye_417_non_object_messages_are_400_on_every_transport(
    nursery: trio.Nursery, message: str
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    port = server.port
    for response in (
        await request(port, "GET", f"/faye?message={quote(message)}"),
        await request(port, "GET", f"/faye?message={quote(message)}&jsonp=cb"),
        await request(port, "POST", "/faye", body=urlencode({"message": message}).encode()),
        await request(port, "POST", "/faye", headers=JSON, body=message.encode()),
    ):
        assert response.status == 400
        assert response.body == b"Bad request"
    async with await WsClient.connect(port) as ws:
        await ws.send_text(message)
        assert await ws.receive_json() == [{"successful": False, "error": "400::Bad request"}]
    await still_serving(server)


@pytest.mark.parametrize(
    "message",
    [{"channel": 1}, {"channel": None, "data": 1}, {"channel": ["/a"]}, {"channel": {"a": 1}}],
    ids=repr,
)
@fail_after(10)
async def test_faye_417_channel_of_the_wrong_type_is_a_402(
    nursery: trio.Nursery, message: dict[str, Any]
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    (reply,) = await bayeux(server.port, [message])
    assert reply["successful"] is False
    assert reply["error"] == "402:channel:Missing required parameter"
    await still_serving(server)


# ----------------------------------------------------- 2016-07: HTTPoxy (client)


@fail_after(20)
async def test_faye_2016_07_httpoxy_our_client_ignores_http_proxy(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY set (as a CGI request's Proxy: header would set it) is never used."""
    proxied: list[trio.SocketStream] = []

    async def fake_proxy(stream: trio.SocketStream) -> None:
        proxied.append(stream)
        await stream.aclose()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, fake_proxy, 0, host=HOST))
    (listener,) = listeners
    proxy_url = f"http://{HOST}:{listener.socket.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy_url)
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    server = await start_server(nursery)
    for transport in ("long-polling", "websocket"):
        async with client(server.url, transport) as alice, alice.subscribe("/direct") as sub:
            await alice.publish("/direct", transport)
            assert (await sub.receive()).data == transport
    assert proxied == []


# ------------------------------------- CVE-2020-11020: prefixed meta channels


@pytest.mark.parametrize(
    "channel",
    [
        "/meta/subscribe/x",
        "/meta/connect/x",
        "/meta/handshake/x",
        "/meta/unsubscribe/x",
        "/meta/disconnect/x",
    ],
)
@fail_after(10)
async def test_cve_2020_11020_prefixed_meta_channels_are_403_on_the_wire(
    nursery: trio.Nursery, channel: str
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    client_id = await handshake(server.port)
    message = {
        **HANDSHAKE,
        "channel": channel,
        "clientId": client_id,
        "subscription": "/secret",
        "connectionType": "long-polling",
    }
    (reply,) = await bayeux(server.port, [message])
    assert reply["error"] == f"403:{channel}:Forbidden channel"
    session = server.engine.store.get(client_id)
    assert session is not None
    assert session.subscriptions == set()
    assert len(server.engine.store) == 1
    await still_serving(server)


class TokenGuard(Extension):
    """An exact-match check of the kind CVE-2020-11020 got around."""

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        if message.get("channel") == "/meta/subscribe" and not (
            isinstance(ext, dict) and ext.get("token") == "s3cret"
        ):
            message["error"] = "403::Token required"
        return message


@fail_after(10)
async def test_cve_2020_11020_auth_extension_is_not_bypassed(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[TokenGuard()])
    assert server.port is not None
    client_id = await handshake(server.port)
    sub = {"clientId": client_id, "subscription": "/secret"}
    replies = await bayeux(
        server.port,
        [
            {"channel": "/meta/subscribe", **sub},
            {"channel": "/meta/subscribe/x", **sub},
            {"channel": "/meta/subscribe/", **sub},
            {"channel": "/meta/subscribe", **sub, "ext": {"token": "s3cret"}},
        ],
    )
    assert [r["successful"] for r in replies] == [False, False, False, True]
    assert replies[0]["error"] == "403::Token required"
    session = server.engine.store.get(client_id)
    assert session is not None
    assert session.subscriptions == {"/secret"}


# --------------------------- 2020-06: origins reflected with credentials (CSRF)


@fail_after(10)
async def test_faye_2020_06_origin_allow_list_covers_every_transport(
    nursery: trio.Nursery,
) -> None:
    config = make_config(allowed_origins=frozenset({"https://app.example"}))
    server = await start_server(nursery, config)
    assert server.port is not None
    port = server.port
    evil = [("origin", "https://evil.example")]
    body = orjson.dumps([HANDSHAKE])
    for response in (
        await request(port, "POST", "/faye", headers=[*JSON, *evil], body=body),
        await request(port, "GET", jsonp_target([HANDSHAKE], "cb"), headers=evil),
        await request(port, "OPTIONS", "/faye", headers=evil),
    ):
        assert response.status == 403
        assert response.body == b"Forbidden origin"
    with pytest.raises(ConnectionRefusedError, match="403"):
        await WsClient.connect(port, headers=evil)
    assert len(server.engine.store) == 0
    good = await request(
        port, "POST", "/faye", headers=[*JSON, ("origin", "https://app.example")], body=body
    )
    assert good.status == 200
    assert good.header("access-control-allow-origin") == "https://app.example"


# --------------------------- 2020-07: TLS certificates not verified (client)


@fail_after(20)
async def test_faye_2020_07_our_client_verifies_certificates_by_default(
    nursery: trio.Nursery,
) -> None:
    """A server whose certificate the system does not trust gets no Bayeux at all.

    tests/client/test_tls.py covers name mismatches and both transports.
    """
    proxy, _ = await tls_proxy(nursery, trustme.CA(), "127.0.0.1")
    async with client(proxy.url, "long-polling") as alice:
        recorder = Recorder(alice)
        await eventually(lambda: recorder.count(TransportDown) >= 1)
        assert "CERTIFICATE_VERIFY_FAILED" in (alice.last_error or "")
        assert alice.client_id is None
    assert proxy.heads == []


# ------------------------- 2026-09 (1.4.2): __proto__ client ids, message theft


@pytest.mark.parametrize("client_id", ["__proto__", "constructor", "prototype", "hasOwnProperty"])
@fail_after(10)
async def test_faye_1_4_2_proto_client_ids_bind_nothing(
    nursery: trio.Nursery, client_id: str
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    victim = LongPoller(server.port)
    await victim.start("/secret")
    async with await WsClient.connect(server.port) as attacker:
        await attacker.send_json(
            [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}]
        )
        (reply,) = await attacker.receive_json()
        assert reply["error"] == f"401:{client_id}:Unknown client"
        stream = await EventSourceReader.open(server.port, f"/faye/{client_id}")
        assert stream.status == 400
        await stream.aclose()
        server.publish("/secret", "for the victim")
        await attacker.send_json([])
        assert await attacker.receive_json() == []  # nothing was pushed here
    replies = await victim.connect()
    assert deliveries(replies) == [{"channel": "/secret", "data": "for the victim"}]
    await still_serving(server)


# ---------------------- Unfixed in Faye: advice injection, fake acknowledgements


@fail_after(10)
async def test_advice_injection_and_fake_acknowledgement_reach_no_subscriber(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    streamed, _ = await ws_session(server.port, "/x")
    polled = LongPoller(server.port)
    await polled.start("/x")
    injected = {
        "channel": "/x",
        "data": 1,
        "advice": {"reconnect": "none", "interval": 0},
        "successful": True,
        "id": "1",
        "clientId": polled.client_id,
    }
    async with streamed:
        (ack,) = await bayeux(server.port, [injected])
        assert ack == {"id": "1", "clientId": polled.client_id, "channel": "/x", "successful": True}
        assert await streamed.receive_json() == [{"channel": "/x", "data": 1}]
    assert deliveries(await polled.connect()) == [{"channel": "/x", "data": 1}]
    await still_serving(server)


# ---------------------- the rows that are not Faye's: IDs, wildcards, encodings


class ChannelAuth(Extension):
    """docs/security.md's recipe: /private/... needs a token, wildcards included."""

    def protected(self, pattern: str) -> bool:
        return pattern in ("/**", "/*") or pattern.startswith("/private/")

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        token = ext.get("token") if isinstance(ext, dict) else None
        if message.get("channel") == "/meta/subscribe":
            wanted = message.get("subscription")
            for pattern in wanted if isinstance(wanted, list) else [wanted]:
                if isinstance(pattern, str) and self.protected(pattern) and token != "admin":
                    message["error"] = f"403:{pattern}:Forbidden channel"
                    break
        return message


@pytest.mark.parametrize(
    "subscription",
    ["/**", "/*", "/private/**", "/private/*", "/private/alice", ["/public", "/**"]],
    ids=repr,
)
@fail_after(10)
async def test_wildcard_subscriptions_go_through_auth_extensions(
    nursery: trio.Nursery, subscription: str | list[str], access_mode: str
) -> None:
    server = await start_server(nursery, extensions=[ChannelAuth()])
    assert server.port is not None
    spy = LongPoller(server.port)
    await spy.handshake()
    ask = {"channel": "/meta/subscribe", "clientId": spy.client_id, "subscription": subscription}
    (reply,) = await spy.send([ask])
    assert reply["successful"] is False
    assert reply["error"].startswith("403:")
    # over a WebSocket too
    ws, _ = await ws_session(server.port)
    async with ws:
        await ws.send_json([ask])
        (reply,) = await ws.receive_json()
        assert reply["successful"] is False
    await spy.connect()
    publisher = LongPoller(server.port)
    await publisher.handshake()
    await publisher.publish("/private/alice", "secret")
    (reply,) = await spy.send([spy.connect_message(advice={"timeout": 0})])
    assert reply["successful"] is True
    session = server.engine.store.get(spy.client_id)
    assert session is not None
    assert session.subscriptions == set()
    assert not session.queue
    # the admin token passes
    admin: dict[str, Any] = {"token": "admin"}
    if access_mode != "faye":
        # With rules, a wildcard reaching a closed channel is refused to every
        # user; only the application itself (the backend secret) may have it.
        admin["auth"] = {"backend": BACKEND_SECRET}
    (reply,) = await spy.send([ask | {"ext": admin}])
    assert reply["successful"] is True


@fail_after(10)
async def test_unsubscribe_connect_or_disconnect_with_another_clients_id(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    victim = LongPoller(server.port)
    await victim.start("/inbox")
    guesses = [
        victim.client_id[:-1] + ("1" if victim.client_id[-1] == "0" else "0"),
        victim.client_id.upper(),
        victim.client_id[:30],
        victim.client_id + "x",
    ]
    for guess in guesses:
        replies = await bayeux(
            server.port,
            [
                {"channel": "/meta/unsubscribe", "clientId": guess, "subscription": "/inbox"},
                {"channel": "/meta/connect", "clientId": guess, "connectionType": "long-polling"},
                {"channel": "/meta/disconnect", "clientId": guess},
            ],
        )
        assert [r["error"] for r in replies] == [f"401:{guess}:Unknown client"] * 3
    async with await WsClient.connect(server.port) as attacker:
        for guess in guesses:
            await attacker.send_json(
                [{"channel": "/meta/connect", "clientId": guess, "connectionType": "websocket"}]
            )
            (reply,) = await attacker.receive_json()
            assert reply["error"] == f"401:{guess}:Unknown client"
    session = server.engine.store.get(victim.client_id)
    assert session is not None
    assert session.subscriptions == {"/inbox"}
    assert session.stream is None
    server.publish("/inbox", "still mine")
    assert deliveries(await victim.connect()) == [{"channel": "/inbox", "data": "still mine"}]


class BoundToUser(Extension):
    """Refuses a clientId presented by another user than the one who got it."""

    def __init__(self) -> None:
        self.owner: dict[str, object] = {}
        self.pending: list[object] = []

    @staticmethod
    def user(message: Message) -> object:
        ext = message.get("ext")
        return ext.get("user") if isinstance(ext, dict) else None

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/handshake":
            self.pending.append(self.user(message))
        elif context.client_id in self.owner and self.owner[context.client_id] != self.user(
            message
        ):
            message["error"] = "403::Not your session"
        return message

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/handshake" and self.pending:
            user = self.pending.pop(0)
            if message.get("successful"):
                self.owner[message["clientId"]] = user
        return message


@fail_after(10)
async def test_a_leaked_client_id_is_refused_by_an_ownership_extension(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, extensions=[BoundToUser()])
    assert server.port is not None
    (reply,) = await bayeux(server.port, [{**HANDSHAKE, "ext": {"user": "alice"}}])
    alice = reply["clientId"]
    alice_ext = {"ext": {"user": "alice"}}
    mallory_ext = {"ext": {"user": "mallory"}}
    subscribe = {"channel": "/meta/subscribe", "clientId": alice, "subscription": "/inbox"}
    assert (await bayeux(server.port, [subscribe | alice_ext]))[0]["successful"] is True
    # Mallory learnt alice's clientId: unsubscribing, connecting, disconnecting fail.
    replies = await bayeux(
        server.port,
        [
            {"channel": "/meta/unsubscribe", "clientId": alice, "subscription": "/inbox"}
            | mallory_ext,
            {"channel": "/meta/connect", "clientId": alice, "connectionType": "long-polling"}
            | mallory_ext,
            {"channel": "/meta/disconnect", "clientId": alice} | mallory_ext,
        ],
    )
    assert [r["error"] for r in replies] == ["403::Not your session"] * 3
    async with await WsClient.connect(server.port) as ws:
        connect = {"channel": "/meta/connect", "clientId": alice, "connectionType": "websocket"}
        await ws.send_json([connect | mallory_ext])
        (reply,) = await ws.receive_json()
        assert reply["error"] == "403::Not your session"
    session = server.engine.store.get(alice)
    assert session is not None
    assert session.subscriptions == {"/inbox"}
    assert session.stream is None


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'[{"channel":"/a","data":"\xff\xfe"}]'),
        ("application/json", b'[{"channel":"/a","data":"\xed\xa0\x80"}]'),  # encoded surrogate
        ("application/json", b'[{"channel":"/a","data":"\\ud800"}]'),  # lone escaped surrogate
        ("application/json", b'[{"channel":"/a","data":"\xc0\xaf"}]'),  # overlong "/"
        ("application/x-www-form-urlencoded", b'message=[{"channel":"/a","data":"\xff"}]'),
    ],
)
@fail_after(10)
async def test_invalid_utf8_in_http_bodies_is_400(
    nursery: trio.Nursery, content_type: str, body: bytes
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    subscriber = LongPoller(server.port)
    await subscriber.start("/a")
    response = await request(
        server.port, "POST", "/faye", headers=[("content-type", content_type)], body=body
    )
    assert response.status == 400
    (reply,) = await subscriber.send([subscriber.connect_message(advice={"timeout": 0})])
    assert reply["successful"] is True  # and no delivery came with it
    await still_serving(server)


@fail_after(10)
async def test_percent_encoded_invalid_utf8_becomes_u_fffd(nursery: trio.Nursery) -> None:
    """Form fields and queries are decoded as parse_qs does: bad bytes become U+FFFD.

    So the engine only ever sees valid text, and subscribers get valid JSON.
    """
    server = await start_server(nursery)
    assert server.port is not None
    subscriber = LongPoller(server.port)
    await subscriber.start("/a")
    encoded = quote(b'[{"channel":"/a","data":"\xff"}]')
    response = await request(server.port, "POST", "/faye", body=f"message={encoded}".encode())
    assert response.status == 200
    surrogate = quote('[{"channel":"/a","data":"') + "%ED%A0%80" + quote('"}]')
    response = await request(server.port, "GET", f"/faye?message={surrogate}&jsonp=cb")
    assert response.status == 200
    got = deliveries(await subscriber.connect())
    assert got == [{"channel": "/a", "data": "\ufffd"}, {"channel": "/a", "data": "\ufffd" * 3}]
    # and a query whose whole message is a bad byte is not JSON
    response = await request(server.port, "GET", "/faye?message=%FF&jsonp=cb")
    assert response.status == 400
    await still_serving(server)


@fail_after(10)
async def test_invalid_utf8_in_a_websocket_text_frame_closes_1007(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    ws, client_id = await ws_session(server.port, "/a")
    async with ws:
        await ws.send_raw(ws_frame(1, b'[{"channel":"/a","data":"\xff"}]'))
        close = await ws.expect_close()
        assert close.code == 1007
    session = server.engine.store.get(client_id)
    assert session is not None
    assert session.stream is None  # the session lives on, for its next connect
    await still_serving(server)


# ----------------------------------------------------- malformed HTTP requests


@pytest.mark.parametrize(
    "data",
    [
        # request smuggling: both framings, or two lengths
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n[{}]",
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n[{}]",
        b"POST /faye HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST /faye HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffffff\r\n",
        # header syntax
        b"GET /faye HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /faye HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
        b"GET /faye HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET\r\n\r\n",
        b"\r\n\r\n\r\n",
    ],
)
@fail_after(10)
async def test_malformed_http_is_refused_and_the_connection_closed(
    nursery: trio.Nursery, data: bytes
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    reply = await raw_exchange(server.port, data)  # returns once the server has closed
    response = parse_response(reply)
    assert response.status in (400, 501), reply
    assert response.header("connection") == "close"
    assert len(server.engine.store) == 0
    await still_serving(server)


@fail_after(10)
async def test_both_content_length_and_chunked_is_refused_so_nothing_is_smuggled(
    nursery: trio.Nursery,
) -> None:
    """A proxy framing by Content-Length would see one request; we must not answer two."""
    server = await start_server(nursery)
    assert server.port is not None
    smuggled = f"GET {jsonp_target([HANDSHAKE], 'smuggled')} HTTP/1.1\r\nHost: x\r\n\r\n"
    data = (
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ) + smuggled.encode()
    reply = await raw_exchange(server.port, data)
    response = parse_response(reply)
    assert response.status == 400
    assert response.header("connection") == "close"
    assert b"smuggled" not in reply
    assert len(server.engine.store) == 0
    await still_serving(server)


@fail_after(10)
async def test_request_line_over_max_header_is_431(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_header=1024))
    assert server.port is not None
    data = b"GET /faye?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    reply = await raw_exchange(server.port, data)
    assert reply.startswith(b"HTTP/1.1 431 ")
    await still_serving(server)


# ------------------------------------------------ malformed WebSocket frames


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (ws_frame(1, b"[]", masked=False), 1002),  # clients must mask
        (ws_frame(1, b"[]", rsv=0x40), 1002),  # no extension was agreed
        (ws_frame(3, b"x"), 1002),  # reserved opcode
        (ws_frame(9, b"x" * 126), 1002),  # control frame over 125 bytes
        (ws_frame(9, b"x", fin=False), 1002),  # fragmented control frame
        (ws_frame(0, b"[]"), 1002),  # continuation with nothing to continue
        (ws_frame(1, b"[", fin=False) + ws_frame(1, b"]"), 1002),  # new message mid-message
        (ws_frame(8, b"\x03"), 1002),  # close with a 1-byte payload
        (ws_frame(8, struct.pack("!H", 999)), 1002),  # close with an invalid code
        (ws_frame(1, b"[\xff]"), 1007),  # text that is not UTF-8
    ],
    ids=[
        "unmasked",
        "rsv1",
        "opcode3",
        "long-ping",
        "fragmented-ping",
        "lone-continuation",
        "interleaved-text",
        "close-1-byte",
        "close-999",
        "bad-utf8",
    ],
)
@fail_after(10)
async def test_malformed_websocket_frames_close_the_connection(
    nursery: trio.Nursery, frame: bytes, code: int
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    ws, client_id = await ws_session(server.port, "/a")
    async with ws:
        await ws.send_raw(frame)
        close = await ws.expect_close()
        assert isinstance(close, CloseConnection)
        assert close.code == code
    session = server.engine.store.get(client_id)
    assert session is not None
    assert session.stream is None
    await still_serving(server)
