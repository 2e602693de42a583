"""Presence against a model: hypothesis drives sessions and subscriptions.

Users (some with several sessions, some without a user id, who count by
clientId) handshake, subscribe to two presence channels (also with a
wildcard, which is no membership), unsubscribe, disconnect, are kicked or
unsubscribed by the server, connect, and expire as time passes. Watchers
(sessions on streams subscribed to ``/presence<channel>``, some joining
midway) rebuild the members from what they receive. After every step:

* ``Engine.presence(channel)`` is exactly the users with a live session
  subscribed to the channel (liveness as the store says; the engine's own
  expiry is tested in test_engine_model.py), each once;
* per channel and user, ``PresenceJoined`` and ``PresenceLeft`` alternate,
  starting with a join, and the users they leave in are the members;
* each watcher's rebuilt list (the members list, then each join appended and
  each leave removed) equals ``Engine.presence``, order and info included.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from bayeux_core import (
    Action,
    Deliver,
    Engine,
    EngineConfig,
    PresenceJoined,
    PresenceLeft,
    Reply,
)
from tests._support.presence import Names

from .helpers import counter_ids

CHANNELS = ("/chat/one", "/chat/two")
CONFIG = EngineConfig(presence=("/chat/*",), timeout=10.0, session_timeout=5.0)
USERS = st.sampled_from(["ann", "bob", "cy", None])


class PresenceMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        ids = counter_ids()
        self.engine = Engine(CONFIG, extensions=[Names()], client_id_generator=lambda: next(ids))
        self.now = 0.0
        self.conns = itertools.count(1)
        #: client id -> (user, subscriptions) as the model sees them
        self.model: dict[str, tuple[str, set[str]]] = {}
        #: (channel, user) in, by the events
        self.joined: set[tuple[str, str]] = set()
        #: watcher stream conn -> (client id, channel, rebuilt members or None)
        self.watchers: dict[int, tuple[str, str, list[dict[str, Any]] | None]] = {}
        for channel in CHANNELS:
            self._watch(channel)

    # ------------------------------------------------------------- plumbing

    def _drain(self) -> None:
        for action in self.engine.actions_to_send():
            self._observe(action)

    def _observe(self, action: Action) -> None:
        if isinstance(action, PresenceJoined):
            key = (action.channel, action.user)
            assert key not in self.joined, f"{key} joined twice"
            self.joined.add(key)
        elif isinstance(action, PresenceLeft):
            key = (action.channel, action.user)
            assert key in self.joined, f"{key} left without joining"
            self.joined.discard(key)
        elif isinstance(action, Reply) and action.conn in self.watchers:
            for message in orjson.loads(action.body):
                self._seen(action.conn, message)
        elif isinstance(action, Deliver):
            for conn in action.conns:
                if conn in self.watchers:
                    self._seen(conn, orjson.loads(action.payload))

    def _seen(self, conn: int, message: dict[str, Any]) -> None:
        client_id, channel, members = self.watchers[conn]
        if message.get("channel") != "/presence" + channel:
            return
        data = message["data"]
        if "members" in data:
            assert members is None, "a second members list"
            members = list(data["members"])
        else:
            assert members is not None, "a change before the members list"
            if "join" in data:
                assert data["join"]["user"] not in [m["user"] for m in members]
                members.append(data["join"])
            else:
                left = data["leave"]["user"]
                assert left in [m["user"] for m in members]
                members = [m for m in members if m["user"] != left]
        self.watchers[conn] = (client_id, channel, members)

    def _send(self, messages: list[dict[str, Any]], conn: int | None = None) -> None:
        self.engine.receive(next(self.conns) if conn is None else conn, messages, now=self.now)
        self._drain()

    def _handshake(self, user: str | None) -> str:
        message: dict[str, Any] = {
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling", "websocket"],
        }
        if user is not None:
            message["ext"] = {"user": user, "info": {"name": user.title()}}
        conn = next(self.conns)
        self.engine.receive(conn, [message], now=self.now)
        actions = self.engine.actions_to_send()
        (reply,) = [orjson.loads(a.body)[0] for a in actions if isinstance(a, Reply)]
        for action in actions:
            self._observe(action)
        client_id = str(reply["clientId"])
        self.model[client_id] = (user or client_id, set())
        return client_id

    def _watch(self, channel: str) -> None:
        client_id = self._handshake(None)
        del self.model[client_id]  # a watcher is no member
        conn = next(self.conns)
        self.watchers[conn] = (client_id, channel, None)
        self.engine.open_stream(conn, now=self.now)
        self._connect_watcher(conn)
        self._send(
            [
                {
                    "channel": "/meta/subscribe",
                    "clientId": client_id,
                    "subscription": "/presence" + channel,
                }
            ],
            conn,
        )

    def _connect_watcher(self, conn: int) -> None:
        client_id = self.watchers[conn][0]
        self._send(
            [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}],
            conn,
        )

    def _sync_liveness(self) -> None:
        for client_id in list(self.model):
            if self.engine.store.get(client_id) is None:
                del self.model[client_id]

    # ---------------------------------------------------------------- rules

    @rule(target=sessions, user=USERS)
    def handshake(self, user: str | None) -> str:
        return self._handshake(user)

    @rule(
        client_id=sessions,
        channels=st.lists(st.sampled_from([*CHANNELS, "/chat/*", "/news"]), min_size=1),
    )
    def subscribe(self, client_id: str, channels: list[str]) -> None:
        self._send(
            [{"channel": "/meta/subscribe", "clientId": client_id, "subscription": channels}]
        )
        if client_id in self.model:
            self.model[client_id][1].update(channels)

    @rule(client_id=sessions, channel=st.sampled_from(CHANNELS))
    def subscribe_and_watch(self, client_id: str, channel: str) -> None:
        """One batch: watch the channel and join it (a long-polling watcher)."""
        self._send(
            [
                {
                    "channel": "/meta/subscribe",
                    "clientId": client_id,
                    "subscription": "/presence" + channel,
                },
                {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel},
            ]
        )
        if client_id in self.model:
            self.model[client_id][1].update({channel, "/presence" + channel})

    @rule(client_id=sessions, channel=st.sampled_from([*CHANNELS, "/chat/*"]))
    def unsubscribe(self, client_id: str, channel: str) -> None:
        self._send(
            [{"channel": "/meta/unsubscribe", "clientId": client_id, "subscription": channel}]
        )
        if client_id in self.model:
            self.model[client_id][1].discard(channel)

    @rule(client_id=sessions, channel=st.sampled_from(CHANNELS))
    def server_unsubscribe(self, client_id: str, channel: str) -> None:
        self.engine.unsubscribe(client_id, channel, now=self.now)
        self._drain()
        if client_id in self.model:
            self.model[client_id][1].discard(channel)

    @rule(client_id=sessions)
    def disconnect(self, client_id: str) -> None:
        self._send([{"channel": "/meta/disconnect", "clientId": client_id}])
        self.model.pop(client_id, None)

    @rule(client_id=sessions)
    def kick(self, client_id: str) -> None:
        self.engine.disconnect(client_id, now=self.now)
        self._drain()
        self.model.pop(client_id, None)

    @rule(client_id=sessions)
    def connect(self, client_id: str) -> None:
        self._send(
            [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}]
        )

    @rule(seconds=st.floats(min_value=0.5, max_value=4.0))
    def advance(self, seconds: float) -> None:
        for conn in self.watchers:
            self._connect_watcher(conn)
        self.now += seconds
        self.engine.handle_timer(self.now)
        self._drain()
        self._sync_liveness()

    @rule(channel=st.sampled_from(CHANNELS))
    def new_watcher(self, channel: str) -> None:
        self._watch(channel)

    # ----------------------------------------------------------- invariants

    @invariant()
    def members_are_the_users_with_a_live_subscribed_session(self) -> None:
        for channel in CHANNELS:
            members = self.engine.presence(channel)
            users = [m["user"] for m in members]
            assert len(users) == len(set(users))
            expected = {user for user, subs in self.model.values() if channel in subs}
            assert set(users) == expected
            assert {u for c, u in self.joined if c == channel} == expected
            for member in members:
                user = member["user"]
                named = user in ("ann", "bob", "cy")
                assert member["info"] == ({"name": user.title()} if named else None)

    @invariant()
    def watchers_see_the_members(self) -> None:
        for _, channel, members in self.watchers.values():
            assert members == self.engine.presence(channel)


TestPresenceModel = PresenceMachine.TestCase
TestPresenceModel.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
