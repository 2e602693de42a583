"""The client against our server, over each transport (the ``transport`` fixture).

Each test starts a BayeuxServer in-process on 127.0.0.1, port 0. A server-side
:class:`Probe` extension says how each message really arrived (WebSocket
frame or HTTP request), so a test cannot pass on the wrong transport.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from bayeux_core import (
    ClientState,
    Disconnected,
    DisconnectReason,
    EngineConfig,
    Event,
    Extension,
    HandshakeFailed,
    HandshakeSucceeded,
    LocalProtocolError,
    Message,
    MessageContext,
    MessageReceived,
    Published,
    SessionEnded,
    Subscribed,
    TransportDown,
    TransportUp,
    Unsubscribed,
)
from bayeux_trio import (
    BayeuxServer,
    BufferFull,
    ClientError,
    PublishError,
    SubscribeError,
    open_client,
)
from tests.interop.auth_ext import TOKENS, WRONG_TOKEN_ERROR, ServerAuth
from tests.trio.helpers import fail_after, make_config, start_server

from .support import HOST, Probe, Proxy, Recorder, client, eventually


def kind_of(transport: str) -> str:
    """How the server sees a transport's messages arrive."""
    return "websocket" if transport == "websocket" else "http"


class AuthToken(Extension):
    """The usual client extension: ``ext.authToken`` on every subscribe."""

    def __init__(self, token: str) -> None:
        self.token = token

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if message["channel"] == "/meta/subscribe":
            ext = message.setdefault("ext", {})
            ext["authToken"] = self.token
        return message


class RefuseLocked(Extension):
    """Refuses publishes to /locked/** with an error of its own."""

    ERROR = "403:/locked:Publishing here is not allowed"

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if str(message.get("channel", "")).startswith("/locked/"):
            message["error"] = self.ERROR
        return message


def server_events(server: BayeuxServer) -> list[Event]:
    events: list[Event] = []
    server.add_listener(events.append)
    return events


# ------------------------------------------------------------------- basics


@fail_after(20)
async def test_subscribe_and_publish_with_wildcards(nursery: trio.Nursery, transport: str) -> None:
    probe = Probe()
    server = await start_server(nursery, extensions=[probe])
    async with client(server.url, transport) as alice, client(server.url, transport) as bob:
        async with alice.subscribe("/chat/**") as deep, alice.subscribe("/chat/*") as shallow:
            assert deep.active
            assert shallow.active
            await bob.publish("/chat/room", {"text": "hi"})
            await bob.publish("/chat/room/side", [1, "two"])
            await bob.publish("/other", "not for alice")
            await bob.publish("/chat/end", None)
            got = [await deep.receive() for _ in range(3)]
            assert [(m.channel, m.data) for m in got] == [
                ("/chat/room", {"text": "hi"}),
                ("/chat/room/side", [1, "two"]),
                ("/chat/end", None),
            ]
            # One segment only; nothing else came before the last one.
            got = [await shallow.receive() for _ in range(2)]
            assert [(m.channel, m.data) for m in got] == [
                ("/chat/room", {"text": "hi"}),
                ("/chat/end", None),
            ]
        assert alice.transport == bob.transport == transport
        # The server saw every message of both sessions arrive on this transport.
        assert probe.kinds(alice.client_id) == {kind_of(transport)}
        assert probe.kinds(bob.client_id) == {kind_of(transport)}


@fail_after(20)
async def test_iteration_and_unsubscribe(nursery: trio.Nursery, transport: str) -> None:
    server = await start_server(nursery)
    events = server_events(server)
    async with client(server.url, transport) as alice:
        first = await alice.subscribe("/room")
        second = await alice.subscribe("/room")  # a second local subscription, one on the server
        server.publish("/room", 1)
        assert (await first.receive()).data == 1
        assert (await second.receive()).data == 1
        await first.unsubscribe()
        await first.unsubscribe()  # twice is fine
        server.publish("/room", 2)
        assert (await second.receive()).data == 2
        assert [m async for m in first] == []  # ended, without an error
        assert not any(isinstance(e, Unsubscribed) for e in events)
        await second.unsubscribe()
        await eventually(lambda: Unsubscribed(str(alice.client_id), "/room") in events)
        assert [e for e in events if isinstance(e, Subscribed)] == [
            Subscribed(str(alice.client_id), "/room")
        ]
        with pytest.raises(trio.EndOfChannel):
            await second.receive()


@fail_after(20)
async def test_callback_subscriptions(nursery: trio.Nursery, transport: str) -> None:
    server = await start_server(nursery)
    plain: list[Any] = []
    awaited: list[Any] = []

    def on_plain(message: MessageReceived) -> None:
        if message.data == "boom":
            raise RuntimeError("a callback failing is logged, not fatal")
        plain.append(message.data)

    async def on_awaited(message: MessageReceived) -> None:
        await trio.lowlevel.checkpoint()
        awaited.append((message.channel, message.data))

    async with client(server.url, transport) as alice:
        news = await alice.subscribe("/news", on_plain)
        everything = await alice.subscribe("/news/**", on_awaited)
        assert news.active
        assert everything.active
        for channel, data in [("/news", "boom"), ("/news", 1), ("/news/sport", 2)]:
            server.publish(channel, data)
        await eventually(lambda: plain == [1] and awaited == [("/news/sport", 2)])
        await news.unsubscribe()
        server.publish("/news", 3)
        server.publish("/news/weather", 4)
        await eventually(lambda: len(awaited) == 2)
        assert awaited == [("/news/sport", 2), ("/news/weather", 4)]
        assert plain == [1]


@fail_after(20)
async def test_publish_refused_raises_the_servers_error(
    nursery: trio.Nursery, transport: str
) -> None:
    server = await start_server(nursery, extensions=[RefuseLocked()])
    async with client(server.url, transport) as alice:
        with pytest.raises(PublishError) as caught:
            await alice.publish("/locked/door", {"open": True})
        assert caught.value.error == RefuseLocked.ERROR
        await alice.publish("/open/door", 1)  # the client goes on


@fail_after(20)
async def test_auth_token_extension_on_subscribe(nursery: trio.Nursery, transport: str) -> None:
    server = await start_server(nursery, extensions=[ServerAuth()])
    async with client(server.url, transport) as eve:
        with pytest.raises(SubscribeError) as caught:
            await eve.subscribe("/private/chat")
        assert caught.value.error == WRONG_TOKEN_ERROR
        assert caught.value.channel == "/private/chat"
        async with eve.subscribe("/public") as public:  # the session is fine
            server.publish("/public", "ok")
            assert (await public.receive()).data == "ok"
    token = TOKENS["/private/chat"]
    async with (
        client(server.url, transport, extensions=[AuthToken(token)]) as alice,
        alice.subscribe("/private/chat") as private,
    ):
        server.publish("/private/chat", "secret")
        assert (await private.receive()).data == "secret"


@fail_after(20)
async def test_subscriptions_made_before_the_handshake(
    nursery: trio.Nursery, transport: str
) -> None:
    server = await start_server(nursery)
    async with client(server.url, transport) as alice:
        assert alice.client_id is None
        assert alice.session.state is ClientState.HANDSHAKING
        # Subscribed and published at once: both wait for the session.
        async with alice.subscribe("/early") as early:
            assert alice.connected
            await alice.publish("/early", "first")
            assert (await early.receive()).data == "first"
        await alice.wait_connected()


@fail_after(20)
async def test_leaving_the_block_disconnects(nursery: trio.Nursery, transport: str) -> None:
    server = await start_server(nursery)
    events = server_events(server)
    async with client(server.url, transport) as alice:
        sub = await alice.subscribe("/x")
        await alice.wait_connected()
        client_id = alice.client_id
        assert client_id is not None
    await eventually(lambda: Disconnected(client_id, DisconnectReason.CLIENT) in events)
    assert alice.session.state is ClientState.DISCONNECTED
    assert [m async for m in sub] == []  # ended cleanly
    with pytest.raises(ClientError):
        await alice.publish("/x", 1)


# ----------------------------------------------------------- transport choice


@fail_after(20)
async def test_websocket_first_then_disable(nursery: trio.Nursery) -> None:
    probe = Probe()
    server = await start_server(nursery, extensions=[probe])
    async with open_client(server.url) as default:
        await default.publish("/a", 1)
        assert default.transport == "websocket"
        assert probe.kinds(default.client_id) == {"websocket"}
    async with open_client(server.url, disable=("websocket",)) as polling:
        await polling.publish("/a", 1)
        assert polling.transport == "long-polling"
        assert probe.kinds(polling.client_id) == {"http"}
    ws_url = server.url.replace("http://", "ws://")
    async with open_client(ws_url, transports=["long-polling", "websocket"]) as preferred:
        await preferred.publish("/a", 1)
        assert preferred.transport == "long-polling"
    with pytest.raises(ValueError, match="every transport is disabled"):
        async with open_client(server.url, transports=["websocket"], disable=["websocket"]):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="unknown transport"):
        async with open_client(server.url, transports=["carrier-pigeon"]):
            pass  # pragma: no cover


@fail_after(20)
async def test_falls_back_to_long_polling_when_upgrades_are_refused(
    nursery: trio.Nursery,
) -> None:
    probe = Probe()
    server = await start_server(nursery, extensions=[probe])
    proxy = Proxy(server.port or 0)
    proxy.refuse_websocket = True
    await nursery.start(proxy.serve)
    async with open_client(proxy.url, retry=0.05) as alice, open_client(server.url) as bob:
        async with alice.subscribe("/news") as news:
            assert alice.transport == "long-polling"
            assert alice.session.connection_types == ["long-polling"]
            await bob.publish("/news", "via polling")
            assert (await news.receive()).data == "via polling"
        # It did try a WebSocket first.
        assert b"upgrade: websocket" in proxy.heads[0].lower()
        assert probe.kinds(alice.client_id) == {"http"}
    # With long-polling disabled there is nothing to fall back to: it keeps trying.
    async with open_client(proxy.url, transports=["websocket"], retry=0.05) as stuck:
        recorder = Recorder(stuck)
        await eventually(lambda: recorder.count(TransportDown) == 1)
        assert "refused with HTTP 400" in (stuck.last_error or "")
        assert stuck.transport == "websocket"
        assert not stuck.connected


# ------------------------------------------------------ headers and cookies


@fail_after(20)
async def test_headers_cookies_and_basic_auth_go_with_every_request(
    nursery: trio.Nursery, transport: str
) -> None:
    server = await start_server(nursery)
    proxy = Proxy(server.port or 0)
    await nursery.start(proxy.serve)
    url = f"http://user:p%40ss@{HOST}:{proxy.port}/faye"
    async with (
        client(
            url, transport, headers={"X-Api-Key": "k1"}, cookies={"session": "s1", "lb": "a"}
        ) as alice,
        alice.subscribe("/x") as sub,
    ):
        await alice.publish("/x", 1)
        await sub.receive()
    assert proxy.heads
    for head in proxy.heads:
        lines = head.split(b"\r\n\r\n")[0].lower().split(b"\r\n")
        assert b"x-api-key: k1" in lines
        assert b"cookie: session=s1; lb=a" in lines
        assert b"authorization: basic dxnlcjpwqhnz" in lines  # user:p@ss
        if transport == "websocket":
            assert lines[0] == b"get /faye http/1.1"
            assert b"upgrade: websocket" in lines
        else:
            assert lines[0] == b"post /faye http/1.1"
            assert b"content-type: application/json" in lines


@fail_after(20)
async def test_long_polling_keeps_connects_apart_from_other_messages(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(timeout=30))
    proxy = Proxy(server.port or 0)
    await nursery.start(proxy.serve)
    async with client(proxy.url, "long-polling") as alice, alice.subscribe("/x") as sub:
        # A connect is held by the server now; publishes still go through.
        for n in range(5):
            await alice.publish("/x", n)
        assert [(await sub.receive()).data for _ in range(5)] == [0, 1, 2, 3, 4]
    # Each connection carried connects only, or never a connect; and it was
    # kept alive (fewer connections than requests).
    requests = 0
    for transcript in proxy.transcripts:
        bodies = [part for part in bytes(transcript).split(b"POST /faye") if part]
        requests += len(bodies)
        connects = [b'"/meta/connect"' in body for body in bodies]
        assert all(connects) or not any(connects), transcript
    assert requests >= 8  # handshake, subscribe, 5 publishes, connects, disconnect
    assert len(proxy.transcripts) < requests / 2


# --------------------------------------------------- publishes while down


@fail_after(30)
async def test_publishes_while_down_go_once_back_and_are_bounded(
    nursery: trio.Nursery, transport: str
) -> None:
    server = await start_server(nursery, make_config(timeout=1))
    events = server_events(server)
    proxy = Proxy(server.port or 0)
    await nursery.start(proxy.serve)
    async with (
        client(server.url, transport) as watcher,
        client(proxy.url, transport, max_pending=3) as alice,
    ):
        recorder = Recorder(alice)
        async with watcher.subscribe("/news") as news:
            await alice.publish("/news", "before")
            assert (await news.receive()).data == "before"
            proxy.block()
            await eventually(lambda: recorder.count(TransportDown) == 1)
            assert alice.session._transport_up is False
            results: list[str] = []
            async with trio.open_nursery() as publishers:
                for n in range(3):

                    async def publish(n: int = n) -> None:
                        await alice.publish("/news", f"while down {n}")
                        results.append(f"acknowledged {n}")

                    publishers.start_soon(publish)
                await trio.testing.wait_all_tasks_blocked()
                # The buffer holds three: the fourth is refused at once.
                with pytest.raises(BufferFull):
                    await alice.publish("/news", "one too many")
                assert results == []
                proxy.blocked = False
            assert sorted(results) == [f"acknowledged {n}" for n in range(3)]
            got = {(await news.receive()).data for _ in range(3)}
            assert got == {f"while down {n}" for n in range(3)}
            assert recorder.count(TransportUp) == 1
            assert alice.connected
    # Held while down, they were sent once, after the connection came back.
    published = [e.data for e in events if isinstance(e, Published) and e.channel == "/news"]
    assert sorted(published) == sorted(["before", *(f"while down {n}" for n in range(3))])


# --------------------------------------------- losing the session, and ending


class ForgetOnce(Extension):
    """Answers the next connect with ``401 <clientId> Unknown client``, once."""

    def __init__(self) -> None:
        self.armed = False

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if self.armed and message.get("channel") == "/meta/connect":
            self.armed = False
            message["error"] = f"401:{message.get('clientId')}:Unknown client"
        return message


@fail_after(20)
async def test_a_401_makes_it_handshake_again_and_resubscribe(
    nursery: trio.Nursery, transport: str
) -> None:
    forget = ForgetOnce()
    server = await start_server(nursery, make_config(timeout=1), extensions=[forget])
    events = server_events(server)
    async with client(server.url, transport) as alice:
        recorder = Recorder(alice)
        async with alice.subscribe("/news") as news:
            old_id = alice.client_id
            forget.armed = True
            await eventually(lambda: recorder.count(HandshakeSucceeded) == 2)
            new_id = str(alice.client_id)
            assert new_id != old_id
            await eventually(lambda: Subscribed(new_id, "/news") in events)
            server.publish("/news", "after")
            assert (await news.receive()).data == "after"
            assert news.active


class EndSessions(Extension):
    """When armed, advises ``reconnect: none`` on connect replies."""

    def __init__(self) -> None:
        self.armed = False

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if self.armed and message.get("channel") == "/meta/connect":
            message["successful"] = False
            message["error"] = "403::Go away"
            message["advice"] = {"reconnect": "none"}
        return message


@fail_after(20)
async def test_reconnect_none_ends_subscriptions_with_the_error(
    nursery: trio.Nursery, transport: str
) -> None:
    end = EndSessions()
    server = await start_server(nursery, make_config(timeout=0.5), extensions=[end])
    async with client(server.url, transport) as alice:
        recorder = Recorder(alice)
        sub = await alice.subscribe("/news")
        end.armed = True
        with pytest.raises(SubscribeError) as caught:
            async for _ in sub:
                pass  # pragma: no cover - nothing is published
        assert caught.value.error == "403::Go away"
        assert recorder.of(SessionEnded) == [SessionEnded("403::Go away")]
        with pytest.raises(ClientError, match="Go away"):
            await alice.publish("/news", 1)
        with pytest.raises(ClientError):
            await alice.wait_connected()


# ------------------------------------------------------------- local errors


@fail_after(20)
async def test_bad_arguments_are_refused_locally(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with open_client(server.url, max_message_size=2048) as alice:
        with pytest.raises(TypeError, match="not JSON"):
            await alice.publish("/a", {1, 2})
        with pytest.raises(ValueError, match="max_message_size"):
            await alice.publish("/a", "x" * 4096)
        with pytest.raises(LocalProtocolError):
            await alice.publish("/a/*", 1)
        with pytest.raises(LocalProtocolError):
            await alice.publish("/meta/handshake", 1)
        with pytest.raises(LocalProtocolError):
            await alice.subscribe("/meta/**")
        with pytest.raises(ValueError, match="buffer"):
            alice.subscribe("/a", buffer=0)
        sub = alice.subscribe("/a")
        with pytest.raises(RuntimeError, match="subscribe first"):
            await sub.receive()
        await sub
        with pytest.raises(RuntimeError, match="only once"):
            await sub
        await alice.publish("/a", "fine")
    for url in ("ftp://example.com/faye", "http:///faye", "http://host:99999/faye"):
        with pytest.raises(ValueError):  # noqa: PT011
            async with open_client(url):
                pass  # pragma: no cover


@fail_after(20)
async def test_a_slow_subscriber_ends_with_an_error_instead_of_losing_messages(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery)
    async with open_client(server.url) as alice:
        fast = await alice.subscribe("/flood")
        slow = await alice.subscribe("/flood", buffer=2)
        for n in range(3):
            server.publish("/flood", n)
        assert [(await fast.receive()).data for _ in range(3)] == [0, 1, 2]
        assert [(await slow.receive()).data for _ in range(2)] == [0, 1]
        with pytest.raises(SubscribeError, match="more than 2 messages"):
            await slow.receive()
        assert fast.active
        assert not slow.active


@fail_after(20)
async def test_the_blocks_exception_comes_out_as_itself(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    with pytest.raises(KeyError, match="mine"):  # noqa: PT012 - raised inside the block
        async with open_client(server.url) as alice:
            await alice.wait_connected()
            raise KeyError("mine")
    # Cancelling from outside works, also while the server cannot be reached.
    with trio.move_on_after(0.3) as scope:
        async with open_client(f"http://{HOST}:1/faye") as nowhere:
            await nowhere.publish("/a", 1)
    assert scope.cancelled_caught
    assert "cannot connect" in (nowhere.last_error or "")


class RefuseHandshakes(Extension):
    """Refuses every handshake, as an authenticating server may."""

    ERROR = "403::Authentication required"

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/handshake":
            message["error"] = self.ERROR
        return message


@fail_after(20)
async def test_a_refused_handshake_is_reported_and_retried(
    nursery: trio.Nursery, transport: str
) -> None:
    # The refusal advises an interval of 0.1 s: the client waits that long.
    config = make_config(engine=EngineConfig(timeout=30, error_interval=0.1))
    server = await start_server(nursery, config, extensions=[RefuseHandshakes()])
    refusals: list[HandshakeFailed] = []
    async with client(server.url, transport, retry=0.05) as alice:
        alice.on(HandshakeFailed, refusals.append)
        with trio.move_on_after(0.5):
            await alice.publish("/a", "never acknowledged")
        assert len(refusals) >= 2  # retried
        assert refusals[0] == HandshakeFailed(RefuseHandshakes.ERROR, final=False)
        assert alice.last_error == f"handshake refused: {RefuseHandshakes.ERROR}"
        assert alice.client_id is None


@fail_after(20)
async def test_a_cancelled_subscribe_leaves_nothing_behind(nursery: trio.Nursery) -> None:
    async with open_client(f"http://{HOST}:1/faye", retry=0.05) as alice:
        with trio.move_on_after(0.2) as scope:
            await alice.subscribe("/a")
        assert scope.cancelled_caught
        assert alice.session.subscriptions == {}
        listener = alice.on(TransportUp, lambda event: None)
        alice.remove_listener(listener)
        assert repr(alice.subscribe("/b")) == "<Subscription /b new>"


@fail_after(20)
async def test_deeply_nested_data_from_a_permissive_server_is_delivered(
    nursery: trio.Nursery, transport: str
) -> None:
    # A server whose limit is above our server's default (Faye has none): the
    # client trusts its server with nesting, so data 100 deep still arrives.
    config = make_config(engine=EngineConfig(max_json_depth=200))
    server = await start_server(nursery, config)
    deep: Any = "bottom"
    for _ in range(100):
        deep = [deep]
    async with client(server.url, transport) as alice, alice.subscribe("/deep") as sub:
        server.publish("/deep", deep)
        got = await sub.receive()
        assert got.data == deep
