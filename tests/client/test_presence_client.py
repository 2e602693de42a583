"""``client.presence(channel)``: who is in a channel, from ``/presence<channel>``.

Three layers:

* the :class:`Roster` alone: deliveries' data in, members and changes out;
* the client against a server *without* presence, where ``/presence/...`` is
  an ordinary channel: the test publishes the members lists, joins and
  leaves itself (fake deliveries), to drive each case of the client exactly;
* the client against a server with presence on (``EngineConfig(presence=...)``)
  and an extension that names each session's user on handshake; last, the
  chat demo's own extension (``examples/chat_presence.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from bayeux_core import (
    EngineConfig,
    Event,
    Extension,
    HandshakeSucceeded,
    LocalProtocolError,
    Message,
    MessageContext,
    Subscribed,
    Unsubscribed,
)
from bayeux_trio import (
    BayeuxClient,
    BayeuxServer,
    ClientError,
    Presence,
    PresenceEvent,
    SubscribeError,
    open_client,
)
from bayeux_trio.client._roster import Roster
from examples.chat_presence import ChatNames, user_of
from tests.trio.helpers import fail_after, make_config, start_server

from .support import Proxy, Recorder, client, eventually

ROOM = "/chat/room"
WATCH = "/presence/chat/room"


def alice_info(name: str = "Alice") -> dict[str, Any]:
    return {"name": name}


def member(user: str, info: Any = None) -> dict[str, Any]:
    return {"user": user, "info": info}


def join(user: str, info: Any = None) -> PresenceEvent:
    return PresenceEvent("join", ROOM, user, info)


def leave(user: str, info: Any = None) -> PresenceEvent:
    return PresenceEvent("leave", ROOM, user, info)


# ------------------------------------------------------------------ the roster


def test_the_roster_takes_a_members_list_then_joins_and_leaves() -> None:
    roster = Roster(ROOM)
    # Before the members list, joins and leaves are ignored: the list has them.
    assert roster.apply({"join": member("early")}) == []
    assert roster.apply({"leave": member("early")}) == []
    assert (roster.synced, roster.members) == (False, {})
    assert roster.apply({"members": [member("alice", alice_info()), member("bob")]}) == []
    assert roster.synced
    assert list(roster.members.items()) == [("alice", alice_info()), ("bob", None)]
    assert roster.apply({"join": member("carol", 3)}) == [join("carol", 3)]
    assert roster.apply({"join": member("carol", 4)}) == []  # a member already: info updated
    assert roster.members["carol"] == 4
    # A leave carries the member's info; the one known stands in when it has none.
    assert roster.apply({"leave": member("bob", "bye")}) == [leave("bob", "bye")]
    assert roster.apply({"leave": member("carol")}) == [leave("carol", 4)]
    assert roster.apply({"leave": member("nobody")}) == []
    assert list(roster.members) == ["alice"]


def test_a_new_members_list_comes_out_as_the_difference() -> None:
    roster = Roster(ROOM)
    roster.apply({"members": [member("alice"), member("bob"), member("carol")]})
    live = roster.members
    changes = roster.apply({"members": [member("carol"), member("dave", 1), member("alice")]})
    assert changes == [leave("bob"), join("dave", 1)]
    assert roster.members is live  # the same dict: views of it stay live
    assert list(roster.members) == ["carol", "dave", "alice"]


@pytest.mark.parametrize(
    "data",
    [
        "text",
        None,
        [member("alice")],
        {},
        {"members": [], "join": member("alice")},
        {"other": member("alice")},
        {"members": "alice"},
        {"join": "alice"},
        {"join": {"user": ""}},
        {"leave": {"user": 7}},
    ],
)
def test_anything_else_is_no_presence_delivery(data: Any) -> None:
    roster = Roster(ROOM)
    roster.apply({"members": [member("alice")]})
    assert roster.apply(data) is None
    assert roster.members == {"alice": None}


def test_bad_entries_of_a_members_list_are_skipped() -> None:
    roster = Roster(ROOM)
    listed = [member("alice"), "bob", {"user": None}, member("alice", "again"), member("carol")]
    assert roster.apply({"members": listed}) == []
    assert roster.members == {"alice": None, "carol": None}


# ------------------------------------------- fake deliveries (presence off)


def server_events(server: BayeuxServer) -> list[Event]:
    events: list[Event] = []
    server.add_listener(events.append)
    return events


async def serve_members(
    server: BayeuxServer,
    events: list[Event],
    watcher: BayeuxClient,
    members: list[dict[str, Any]],
    *,
    channel: str = WATCH,
) -> None:
    """Publish the members list once ``watcher`` is subscribed to ``channel``."""
    await eventually(lambda: Subscribed(str(watcher.client_id), channel) in events)
    server.publish(channel, {"members": members})


@fail_after(20)
async def test_members_callbacks_and_iteration(nursery: trio.Nursery, transport: str) -> None:
    server = await start_server(nursery)
    events = server_events(server)
    async with client(server.url, transport) as alice:
        nursery.start_soon(
            serve_members, server, events, alice, [member("alice", alice_info()), member("bob")]
        )
        async with alice.presence(ROOM) as room:
            assert room.active
            assert room.channel == ROOM
            assert dict(room.members) == {"alice": alice_info(), "bob": None}
            members = room.members
            joined: list[PresenceEvent] = []
            left: list[PresenceEvent] = []
            on_join = joined.append
            assert room.on("join", on_join) is on_join
            room.on("leave", left.append)
            server.publish(WATCH, {"join": member("carol", {"name": "Carol"})})
            server.publish(WATCH, {"leave": member("bob")})
            server.publish(WATCH, "not a presence delivery")
            assert await room.receive() == join("carol", {"name": "Carol"})
            assert await room.receive() == leave("bob")
            assert joined == [join("carol", {"name": "Carol"})]
            assert left == [leave("bob")]
            # The mapping is live and read-only.
            assert list(members) == ["alice", "carol"]
            with pytest.raises(TypeError):
                members["mallory"] = None  # type: ignore[index]
            room.off("join", on_join)
            room.off("join", on_join)  # not there any more: nothing happens
            server.publish(WATCH, {"join": member("dave")})
            assert await room.receive() == join("dave")
            assert joined == [join("carol", {"name": "Carol"})]
        # Closed: the subscription is gone, iteration ends, members stay as they were.
        await eventually(lambda: Unsubscribed(str(alice.client_id), WATCH) in events)
        assert (room.active, room.error) == (False, None)
        assert [event async for event in room] == []
        assert list(room.members) == ["alice", "carol", "dave"]
        server.publish(WATCH, {"leave": member("alice")})
        assert "alice" in room.members
        assert "Presence /chat/room ended 3 members" in repr(room)


@fail_after(20)
async def test_no_members_list_means_no_presence_on_the_server(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    events = server_events(server)
    async with open_client(server.url) as alice:
        with pytest.raises(SubscribeError) as caught:
            await alice.presence(ROOM, timeout=0.3)
        assert caught.value.channel == WATCH
        assert "no members list within 0.3 s: is presence on for /chat/room" in caught.value.error
        # It did not stay subscribed.
        await eventually(lambda: Unsubscribed(str(alice.client_id), WATCH) in events)
        assert alice._rosters == {}


@fail_after(20)
async def test_a_second_presence_shares_the_members_list(nursery: trio.Nursery) -> None:
    """The server sends a members list once per subscription of the session;
    a second Presence on the channel (or one after a plain subscription to the
    presence channel) starts from the one the client already has."""
    server = await start_server(nursery)
    events = server_events(server)
    async with open_client(server.url) as alice:
        plain = await alice.subscribe(WATCH)
        server.publish(WATCH, {"members": [member("bob")]})
        assert (await plain.receive()).data == {"members": [member("bob")]}  # plain gets it all
        first = await alice.presence(ROOM, timeout=1)
        second = await alice.presence(ROOM, timeout=1)
        assert dict(first.members) == dict(second.members) == {"bob": None}
        server.publish(WATCH, {"join": member("carol")})
        assert await first.receive() == join("carol")
        assert await second.receive() == join("carol")
        await first.close()
        await plain.unsubscribe()
        server.publish(WATCH, {"leave": member("bob")})
        assert await second.receive() == leave("bob")
        assert list(first.members) == ["bob", "carol"]
        assert list(second.members) == ["carol"]
        assert not any(isinstance(e, Unsubscribed) for e in events)
        await second.close()
        await eventually(lambda: Unsubscribed(str(alice.client_id), WATCH) in events)
        assert alice._rosters == {}


@fail_after(20)
async def test_a_new_members_list_is_told_as_joins_and_leaves(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    events = server_events(server)
    async with open_client(server.url) as alice:
        nursery.start_soon(serve_members, server, events, alice, [member("alice"), member("bob")])
        room = await alice.presence(ROOM)
        seen: list[PresenceEvent] = []
        room.on("join", seen.append)
        room.on("leave", seen.append)
        server.publish(WATCH, {"members": [member("bob"), member("carol")]})
        assert [await room.receive(), await room.receive()] == [leave("alice"), join("carol")]
        assert seen == [leave("alice"), join("carol")]
        assert list(room.members) == ["bob", "carol"]
        await room.close()


async def serve_members_and_join(
    server: BayeuxServer, events: list[Event], watcher: BayeuxClient
) -> None:
    """The members list and a join, published together."""
    await eventually(lambda: Subscribed(str(watcher.client_id), WATCH) in events)
    server.publish(WATCH, {"members": [member("alice")]})
    server.publish(WATCH, {"join": member("bob")})


@fail_after(20)
async def test_changes_before_the_start_returns_are_in_the_members_only(
    nursery: trio.Nursery,
) -> None:
    """Over WebSocket, where both deliveries come in one frame: the join is
    in ``members`` when the start returns, so it is no event."""
    server = await start_server(nursery)
    events = server_events(server)
    async with client(server.url, "websocket") as alice:
        nursery.start_soon(serve_members_and_join, server, events, alice)
        async with alice.presence(ROOM) as room:
            assert list(room.members) == ["alice", "bob"]
            server.publish(WATCH, {"join": member("carol")})
            assert await room.receive() == join("carol")  # bob's join is not told again


@fail_after(20)
async def test_a_slow_iteration_ends_with_an_error_and_the_rest_goes_on(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery)
    events = server_events(server)
    async with open_client(server.url) as alice:
        nursery.start_soon(serve_members, server, events, alice, [])
        async with alice.presence(ROOM, buffer=1) as room:
            joined: list[str] = []
            room.on("join", lambda event: joined.append(event.user))
            for user in ("a", "b", "c"):
                server.publish(WATCH, {"join": member(user)})
            await eventually(lambda: joined == ["a", "b", "c"])
            assert await room.receive() == join("a")
            with pytest.raises(SubscribeError, match="more than 1 presence events were waiting"):
                await room.receive()
            assert room.active
            assert list(room.members) == ["a", "b", "c"]


@fail_after(20)
async def test_a_failing_callback_is_logged_and_the_others_run(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(nursery)
    events = server_events(server)

    def boom(event: PresenceEvent) -> None:
        raise RuntimeError("boom")

    async with open_client(server.url) as alice:
        nursery.start_soon(serve_members, server, events, alice, [])
        async with alice.presence(ROOM) as room:
            seen: list[PresenceEvent] = []
            room.on("join", boom)
            room.on("join", seen.append)
            with caplog.at_level(logging.ERROR, "bayeux.client"):
                server.publish(WATCH, {"join": member("bob")})
                assert await room.receive() == join("bob")
            assert seen == [join("bob")]
            assert "a join callback of the presence in /chat/room failed" in caplog.text


class RefusePresence(Extension):
    """Refuses subscriptions to presence channels, as an access rule would."""

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        subscription = message.get("subscription")
        if message.get("channel") == "/meta/subscribe" and str(subscription).startswith(
            "/presence/"
        ):
            message["error"] = f"403:{subscription}:Forbidden channel"
        return message


@fail_after(20)
async def test_a_refused_subscription_raises_the_servers_error(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, extensions=[RefusePresence()])
    async with open_client(server.url) as alice:
        with pytest.raises(SubscribeError) as caught:
            await alice.presence(ROOM)
        assert caught.value.channel == WATCH
        assert caught.value.error == "403:/presence/chat/room:Forbidden channel"
        assert alice._rosters == {}


@fail_after(20)
async def test_the_client_closing_ends_a_presence(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    events = server_events(server)
    async with open_client(server.url) as alice:
        nursery.start_soon(serve_members, server, events, alice, [member("bob")])
        room = await alice.presence(ROOM)
        waiting = alice.presence("/chat/other", timeout=None)
        nursery.start_soon(expect_closed, waiting)
        await eventually(lambda: Subscribed(str(alice.client_id), "/presence/chat/other") in events)
    assert not room.active
    assert room.error is None
    assert [event async for event in room] == []
    assert dict(room.members) == {"bob": None}


async def expect_closed(waiting: Presence) -> None:
    with pytest.raises(ClientError, match="closed before the members list"):
        await waiting


@fail_after(20)
async def test_bad_arguments_are_refused_locally(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    events = server_events(server)
    async with open_client(server.url) as alice:
        for channel in ("/chat/*", "/chat/**", "/meta/x", "/service/x", "/presence", "/presence/a"):
            with pytest.raises(LocalProtocolError, match="cannot have presence"):
                alice.presence(channel)
        with pytest.raises(ValueError, match="buffer"):
            alice.presence(ROOM, buffer=0)
        room = alice.presence(ROOM)
        with pytest.raises(RuntimeError, match="start it first"):
            await room.receive()

        async def later(event: PresenceEvent) -> None:
            pass  # pragma: no cover - refused

        with pytest.raises(ValueError, match="unknown presence event"):
            room.on("members", print)
        with pytest.raises(TypeError, match="plain functions"):
            room.on("join", later)  # type: ignore[arg-type]
        nursery.start_soon(serve_members, server, events, alice, [])
        await room
        with pytest.raises(RuntimeError, match="only once"):
            await room
        await room.close()
        await room.close()  # twice is fine


# ------------------------------------------------------ a server with presence


class NameUsers(Extension):
    """Names each session's user on handshake from ``ext.user`` (and ``ext.info``)."""

    outgoing_deliveries = False

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        if message.get("channel") == "/meta/handshake" and isinstance(ext, dict):
            context.user = ext.get("user")
            context.info = ext.get("info")
        return message


class As(Extension):
    """A client extension: who this client says it is, on handshake."""

    def __init__(self, user: str, info: Any = None) -> None:
        self.user = user
        self.info = info

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if message["channel"] == "/meta/handshake":
            message["ext"] = {"user": self.user, "info": self.info}
        return message


async def presence_server(nursery: trio.Nursery, **engine: Any) -> BayeuxServer:
    # Sessions without a connection expire after 1 s, for the re-handshake test.
    engine = {"timeout": 1.0, "session_timeout": 1.0, "error_interval": 0.2, **engine}
    config = make_config(engine=EngineConfig(**engine, presence=("/chat/**",)))
    return await start_server(nursery, config, extensions=[NameUsers()])


@fail_after(30)
async def test_users_join_and_leave_once_whatever_their_sessions(
    nursery: trio.Nursery, transport: str
) -> None:
    server = await presence_server(nursery)
    url = server.url
    async with client(url, transport, extensions=[As("watcher")]) as watcher:
        async with client(url, transport, extensions=[As("alice", alice_info())]) as alice:
            await alice.subscribe(ROOM)
            room = await watcher.presence(ROOM)
            assert dict(room.members) == {"alice": alice_info()}
            async with client(url, transport, extensions=[As("bob")]) as bob:
                await bob.subscribe(ROOM)
                assert await room.receive() == join("bob")
                # Bob's second tab: no join; closing it: no leave.
                async with client(url, transport, extensions=[As("bob")]) as bob_again:
                    await bob_again.subscribe(ROOM)
                    await bob_again.subscribe("/chat/*")  # a wildcard is no membership
                assert server.presence(ROOM) == [
                    {"user": "alice", "info": alice_info()},
                    {"user": "bob", "info": None},
                ]
            # Bob's last session has gone: one leave.
            assert await room.receive() == leave("bob")
            # Following the presence is not being in the channel.
            assert "watcher" not in room.members
            sub = await alice.subscribe(ROOM)  # a second local subscription changes nothing
            await sub.unsubscribe()
        assert await room.receive() == leave("alice", alice_info())
        assert dict(room.members) == {}
        await room.close()


@fail_after(30)
async def test_after_a_new_handshake_the_members_are_in_step_again(
    nursery: trio.Nursery, transport: str
) -> None:
    """The server forgot the watcher's session while alice left and bob came:
    the client handshakes again, subscribes again, gets a new members list,
    and tells the difference as a leave and a join."""
    server = await presence_server(nursery)
    proxy = Proxy(server.port or 0)
    await nursery.start(proxy.serve)
    async with client(proxy.url, transport, extensions=[As("watcher")]) as watcher:
        recorder = Recorder(watcher)
        async with client(server.url, transport, extensions=[As("alice")]) as alice:
            await alice.subscribe(ROOM)
            room = await watcher.presence(ROOM)
            assert list(room.members) == ["alice"]
            seen: list[PresenceEvent] = []
            room.on("join", seen.append)
            room.on("leave", seen.append)
            old_id = str(watcher.client_id)
            proxy.block()  # the watcher hears nothing from now on
        async with client(server.url, transport, extensions=[As("bob")]) as bob:
            await bob.subscribe(ROOM)
            assert server.presence(ROOM) == [{"user": "bob", "info": None}]
            # The server expires the watcher's session (with what it queued for it).
            await eventually(lambda: server.engine.store.get(old_id) is None)
            assert seen == []
            assert list(room.members) == ["alice"]
            proxy.blocked = False
            await eventually(lambda: recorder.count(HandshakeSucceeded) == 2)
            assert await room.receive() == leave("alice")
            assert await room.receive() == join("bob")
            assert seen == [leave("alice"), join("bob")]
            assert list(room.members) == ["bob"]
            assert room.active


@fail_after(20)
async def test_presence_of_a_channel_without_it_is_refused(nursery: trio.Nursery) -> None:
    url = (await presence_server(nursery)).url
    async with open_client(url) as alice:
        with pytest.raises(SubscribeError) as caught:
            await alice.presence("/elsewhere")
        assert caught.value.error.startswith("403:/presence/elsewhere:")


# ---------------------------------------------- the chat demo's extension


class Named(Extension):
    """A client extension: the chat page's handshake, ``ext: {"name": ...}``."""

    def __init__(self, name: Any) -> None:
        self.name = name

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if message["channel"] == "/meta/handshake":
            message["ext"] = {"name": self.name}
        return message


def test_a_typed_name_makes_the_user_id() -> None:
    assert user_of("  Alice   Liddell ") == "alice liddell"
    assert user_of("ALICE") == "alice"
    assert user_of("x" * 40) == "x" * 40
    for unusable in (None, 7, "", "   ", "x" * 41, ["alice"]):
        assert user_of(unusable) is None


@fail_after(30)
async def test_the_chat_names_users_from_their_handshake(nursery: trio.Nursery) -> None:
    """Two tabs named Alice and alice are one member, shown as the first
    named them; a page without a usable name is a guest (its clientId); a
    named session publishes under its own name only."""
    config = make_config(engine=EngineConfig(timeout=1.0, presence=("/chat/**",)))
    server = await start_server(nursery, config, extensions=[ChatNames()])
    url = server.url
    async with open_client(url) as watcher, open_client(url, extensions=[Named(" Alice ")]) as tab:
        await tab.subscribe(ROOM)
        room = await watcher.presence(ROOM)
        assert dict(room.members) == {"alice": {"name": "Alice"}}
        async with open_client(url, extensions=[Named("alice")]) as second_tab:
            await second_tab.subscribe(ROOM)
            async with open_client(url, extensions=[Named("x" * 41)]) as guest:
                await guest.subscribe(ROOM)
                assert await room.receive() == join(str(guest.client_id))
            assert await room.receive() == leave(str(guest.client_id))
            async with second_tab.subscribe(ROOM) as heard:
                await tab.publish(ROOM, {"name": "Mallory", "text": "hi"})
                assert (await heard.receive()).data == {"name": "Alice", "text": "hi"}
                await watcher.publish(ROOM, {"name": "Carol", "text": "unnamed"})
                assert (await heard.receive()).data == {"name": "Carol", "text": "unnamed"}
                await tab.publish(ROOM, "not an object")
                assert (await heard.receive()).data == "not an object"
        assert dict(room.members) == {"alice": {"name": "Alice"}}
        assert server.presence(ROOM) == [{"user": "alice", "info": {"name": "Alice"}}]
