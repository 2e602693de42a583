"""The in-process client (``server.get_client()``), on :class:`bayeux_core.ClientSession`."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel

from bayeux_core import Extension, Message, MessageContext, Subscribed
from bayeux_trio import AsyncExtension, BayeuxServer, LocalClient, PublishError

from .helpers import LongPoller, deliveries, fail_after, make_config, start_server, wait_for


class _Drop(Extension):
    """Drops (returns None for) every incoming message on ``channel``."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == self.channel:
            return None
        return message


class _DropSubscribe(Extension):
    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("subscription") == "/hidden":
            return None
        return message


class _Refuse(Extension):
    """Refuses messages on ``channel`` with an error."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == self.channel:
            message["error"] = "403::Denied"
        return message


class _AsyncDrop(AsyncExtension):
    async def incoming(self, message: Message, request: object) -> Message | None:
        await trio.lowlevel.checkpoint()
        if message.get("channel") == "/async-dropped":
            return None
        return message


def _no_leaks(server: BayeuxServer, client: LocalClient) -> None:
    assert client._results == {}
    assert client._requests == {}
    # Only the client's stream is left among the hub's connections.
    assert [e for e in server.hub._endpoints.values() if e is client] == [client]


@fail_after(10)
async def test_subscribe_publish_and_receive(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    client = server.get_client()
    assert server.get_client() is client
    got: list[tuple[str, Any]] = []
    await client.subscribe("/chat/*", lambda channel, data: got.append((channel, data)))
    assert client.client_id is not None
    session = server.engine.store.get(client.client_id)
    assert session is not None
    assert session.subscriptions == {"/chat/*"}
    await client.publish("/chat/a", {"n": 1})
    await wait_for(lambda: got == [("/chat/a", {"n": 1})])
    server.publish("/chat/b", "from the server")
    await wait_for(lambda: got[-1] == ("/chat/b", "from the server"))
    _no_leaks(server, client)


@fail_after(10)
async def test_a_network_client_reaches_the_local_one(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    client = server.get_client()
    got: list[Any] = []
    await client.subscribe("/news", lambda channel, data: got.append(data))
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start("/news")
    assert (await poller.publish("/news", "hello"))["successful"] is True
    await wait_for(lambda: got == ["hello"])
    await client.publish("/news", "back")
    # The poller's own publish first (it is subscribed too), then the local one.
    assert [m["data"] for m in deliveries(await poller.connect())] == ["hello", "back"]


@fail_after(10)
async def test_refused_publish_raises_with_the_servers_error(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[_Refuse("/closed")])
    client = server.get_client()
    with pytest.raises(PublishError) as caught:
        await client.publish("/closed", 1)
    assert caught.value.error == "403::Denied"
    await client.publish("/open", 1)
    _no_leaks(server, client)


@fail_after(10)
async def test_publish_dropped_by_an_extension_fails(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[_Drop("/dropped")])
    client = server.get_client()
    with pytest.raises(PublishError) as caught:
        await client.publish("/dropped", 1)
    assert caught.value.error == "Dropped by a server extension"
    _no_leaks(server, client)
    # The client goes on.
    await client.publish("/kept", 2)
    _no_leaks(server, client)


@fail_after(10)
async def test_publish_dropped_by_an_async_extension_fails(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[_AsyncDrop()])
    client = server.get_client()
    with pytest.raises(PublishError, match="Dropped by a server extension"):
        await client.publish("/async-dropped", 1)
    await client.publish("/kept", 2)
    _no_leaks(server, client)


@fail_after(10)
async def test_subscribe_dropped_by_an_extension_fails(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[_DropSubscribe()])
    client = server.get_client()
    with pytest.raises(PublishError, match="Dropped by a server extension"):
        await client.subscribe("/hidden", lambda channel, data: None)
    assert client._callbacks == {}
    await client.subscribe("/shown", lambda channel, data: None)


@fail_after(10)
async def test_refused_handshake_fails_the_call_and_the_next_one_retries(
    nursery: trio.Nursery,
) -> None:
    refuse = _Refuse("/meta/handshake")
    server = await start_server(nursery, extensions=[refuse])
    client = server.get_client()
    with pytest.raises(PublishError) as caught:
        await client.publish("/x", 1)
    assert caught.value.error == "403::Denied"
    server.remove_extension(refuse)
    await client.publish("/x", 1)
    assert client.client_id is not None


@fail_after(10)
async def test_invalid_channels_raise_publish_error(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    client = server.get_client()
    with pytest.raises(PublishError):
        await client.publish("/meta/nope", 1)
    with pytest.raises(PublishError):
        await client.subscribe("not a channel", lambda channel, data: None)


@fail_after(10)
async def test_unsubscribe_stops_deliveries(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    client = server.get_client()
    got: list[Any] = []

    def first(channel: str, data: Any) -> None:
        got.append(("first", data))

    def second(channel: str, data: Any) -> None:
        got.append(("second", data))

    await client.subscribe("/t", first)
    await client.subscribe("/t", second)
    await client.publish("/t", 1)
    await wait_for(lambda: len(got) == 2)
    await client.unsubscribe("/t", first)
    await client.publish("/t", 2)
    await wait_for(lambda: got[-1] == ("second", 2))
    await client.unsubscribe("/t")
    assert client.client_id is not None
    session = server.engine.store.get(client.client_id)
    assert session is not None
    assert session.subscriptions == set()
    await client.publish("/t", 3)
    assert len(got) == 3


@fail_after(10)
async def test_disconnect_ends_the_session_for_good(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    client = server.get_client()
    await client.subscribe("/t", lambda channel, data: None)
    client_id = client.client_id
    assert client_id is not None
    await client.disconnect()
    assert server.engine.store.get(client_id) is None
    with pytest.raises(PublishError):
        await client.publish("/t", 1)
    await client.disconnect()  # again: nothing


@fail_after(10)
async def test_a_kicked_client_starts_again_on_its_next_call(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    client = server.get_client()
    got: list[Any] = []
    await client.subscribe("/t", lambda channel, data: got.append(data))
    first = client.client_id
    assert first is not None
    session = server.engine.store.get(first)
    assert session is not None
    await wait_for(lambda: session.held is not None)
    assert server.disconnect(first) is True
    await wait_for(lambda: client.client_id is None)
    await client.publish("/t", "again")
    assert client.client_id not in (None, first)
    await wait_for(lambda: got == ["again"])


@fail_after(10)
async def test_a_listener_publishing_on_subscribe_reaches_the_local_client(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery)
    server.on(Subscribed, lambda event: server.publish(event.channel, "welcome"))
    client = server.get_client()
    got: list[Any] = []
    await client.subscribe("/room", lambda channel, data: got.append(data))
    await wait_for(lambda: got == ["welcome"])


class _CountConnects(Extension):
    def __init__(self) -> None:
        self.replies = 0

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/connect":
            self.replies += 1
        return message


@fail_after(10)
async def test_connect_loop_keeps_one_connect_held(nursery: trio.Nursery) -> None:
    counter = _CountConnects()
    server = await start_server(nursery, make_config(timeout=0.05), extensions=[counter])
    client = server.get_client()
    await client.subscribe("/t", lambda channel, data: None)
    assert client.client_id is not None
    session = server.engine.store.get(client.client_id)
    assert session is not None
    # Holds end at their timeout and the client connects again each time.
    await wait_for(lambda: counter.replies >= 5)
    await wait_for(lambda: session.held is not None)
    assert server.engine.store.get(client.client_id) is session
