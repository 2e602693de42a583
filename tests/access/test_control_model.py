"""The issue's property through the engine: no message published on a channel
reaches a session that its rules would refuse (issue 17).

tests/core/test_access_model.py proves it of ``AccessRules`` alone, with
``matches`` standing for delivery. Here the same random rules are installed
as the server installs them (``make_control`` on bayeux_core's Engine), and
sessions come from the credentials clients really send: none, a registry
token on the handshake or on each subscribe (the seed's way), a connection
token (JWT) with or without a ``channels`` claim, and a channel token on each
subscribe. They subscribe to random channels and wildcards; the application
(the backend secret, which every rule admits) publishes on random channels;
then what each session has queued is read.

Properties, judged by the naive oracle of test_access_model.py:

1. a subscription is accepted exactly when the oracle admits the session's
   principal to it;
2. every delivery queued for a session is on a channel the oracle lets that
   principal subscribe to (the issue's sentence);
3. every channel an accepted subscription matches is delivered (so 2 is not
   met by delivering nothing).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt as pyjwt
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeux_core import ChannelRule, EngineConfig, Principal, matches
from bayeux_trio.access import AccessSettings, JwtSettings, TokenFileSettings, make_control
from tests.core.helpers import Wire, replies
from tests.core.test_access_model import (
    LITERALS,
    USERS,
    _world_for,
    channels,
    oracle_subscribe,
    rules,
    subscriptions,
)

SECRET = "control-model-jwt-secret-of-40-bytes-0123"
BACKEND = "control-model-backend-secret"
#: registry tokens of the model's users
TOKENS = {user: f"token-of-{user}" for user in USERS}
KINDS = ("anonymous", "registry handshake", "registry per message", "jwt")


@dataclass(frozen=True)
class Files:
    tokens: TokenFileSettings
    jwt: JwtSettings
    backend_secret: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """The registry, the JWT secret and the backend secret, the same for every example."""
    folder = tmp_path_factory.mktemp("control-model")
    (folder / "tokens.json").write_text(json.dumps(TOKENS))
    (folder / "jwt.secret").write_text(SECRET)
    (folder / "backend.secret").write_text(BACKEND)
    return Files(
        tokens=TokenFileSettings(file=folder / "tokens.json"),
        jwt=JwtSettings(secret_file=folder / "jwt.secret"),
        backend_secret=folder / "backend.secret",
    )


@dataclass(frozen=True)
class Client:
    """A session as its credentials make it."""

    kind: str
    user: str | None
    #: the connection token's ``channels`` claim (jwt only)
    grants: tuple[str, ...] | None
    #: the channel a channel token on each subscribe opens
    channel_token: str | None
    wanted: tuple[str, ...]

    @property
    def principal(self) -> Principal:
        """Who the rules should see: the oracle's input."""
        user = None if self.kind == "anonymous" else self.user
        return Principal(user=user, grants=self.grants, channel_token=self.channel_token)


@st.composite
def clients(draw: st.DrawFn) -> Client:
    kind = draw(st.sampled_from(KINDS))
    grants = None
    if kind == "jwt":
        grants = draw(st.one_of(st.none(), st.lists(subscriptions(LITERALS), max_size=2)))
    return Client(
        kind=kind,
        user=draw(st.sampled_from(USERS)),
        grants=None if grants is None else tuple(grants),
        channel_token=draw(st.one_of(st.none(), channels(LITERALS, 3))),
        wanted=tuple(draw(st.lists(subscriptions(), min_size=1, max_size=4))),
    )


def _jwt(**claims: Any) -> str:
    return pyjwt.encode({"exp": int(time.time()) + 3600, **claims}, SECRET, algorithm="HS256")


def _start(wire: Wire, client: Client) -> str:
    """Handshake as ``client`` would; its client id."""
    message: dict[str, Any] = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }
    if client.kind == "registry handshake":
        message["ext"] = {"authToken": TOKENS[str(client.user)]}
    elif client.kind == "jwt":
        claims: dict[str, Any] = {"sub": client.user}
        if client.grants is not None:
            claims["channels"] = list(client.grants)
        message["ext"] = {"auth": {"token": _jwt(**claims)}}
    (reply,) = replies(wire.send([message]))
    assert reply["successful"] is True, reply
    client_id: str = reply["clientId"]
    return client_id


def _subscribe(wire: Wire, client: Client, client_id: str, subscription: str) -> bool:
    ext: dict[str, Any] = {}
    if client.kind == "registry per message":
        ext["authToken"] = TOKENS[str(client.user)]
    if client.channel_token is not None:
        ext["auth"] = {"channelToken": _jwt(channel=client.channel_token)}
    message: dict[str, Any] = {
        "channel": "/meta/subscribe",
        "clientId": client_id,
        "subscription": subscription,
    }
    if ext:
        message["ext"] = ext
    (reply,) = replies(wire.send([message]))
    accepted: bool = reply["successful"]
    return accepted


@settings(max_examples=200, deadline=None)
@given(
    rules(),
    st.lists(clients(), min_size=1, max_size=4),
    st.lists(channels(), min_size=1, max_size=6, unique=True),
)
def test_no_delivery_reaches_a_session_its_rules_refuse(
    files: Files,
    all_rules: tuple[ChannelRule, ...],
    sessions: list[Client],
    published: list[str],
) -> None:
    access = AccessSettings(
        rules=all_rules,
        tokens=files.tokens,
        jwt=files.jwt,
        backend_secret_file=files.backend_secret,
    )
    wire = Wire(EngineConfig(), extensions=(make_control(access),))
    accepted: dict[str, list[str]] = {}
    for client in sessions:
        client_id = _start(wire, client)
        accepted[client_id] = []
        who = client.principal
        for subscription in client.wanted:
            ok = _subscribe(wire, client, client_id, subscription)
            world = _world_for(who, subscription)
            assert ok == oracle_subscribe(all_rules, subscription, who, world), (
                client,
                subscription,
            )
            if ok:
                accepted[client_id].append(subscription)
    for number, channel in enumerate(published):
        message = {"channel": channel, "data": number, "ext": {"auth": {"backend": BACKEND}}}
        (reply,) = replies(wire.send([message]))
        assert reply["successful"] is True, reply
    for client, (client_id, subscribed) in zip(sessions, accepted.items(), strict=True):
        session = wire.engine.store.get(client_id)
        assert session is not None
        got = [orjson.loads(item)["channel"] for item in session.queue]
        who = client.principal
        for channel in got:
            # Delivered: the channel's own subscribe rule must admit them.
            world = _world_for(who, channel)
            assert oracle_subscribe(all_rules, channel, who, world), (client, channel)
        expected = [c for c in published if any(matches(s, c) for s in subscribed)]
        assert got == expected, client
