"""Faye's security rows asked again of the access rules, over the wire (issue 17).

test_faye_history.py shows that installing access control reopens none of
Faye's holes; this file attacks the rules, tokens and secrets themselves:
prefixed meta channels and wildcards against a users-only channel, tokens
replayed from deliveries, forged and oversized JWTs, a spoofed sender, a
channel token stretched to other channels, a guessed backend secret, and a
session that outlives its token. A real server on loopback each time, the
attacker over long-polling and WebSocket where the transport could matter,
every frame a victim or attacker receives kept raw so that a token showing
up anywhere is caught, and the server still answering others afterwards (the
``server`` fixture checks, after each test). Forged tokens are made by
tests/_support/tokens.py, as in the other JWT suites.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt as pyjwt
import orjson
import pytest
import trio
from wsproto.events import Ping, TextMessage

from bayeux_core import ChannelRule
from bayeux_trio import BayeuxServer
from bayeux_trio.access import AccessSettings, JwtSettings, TokenFileSettings, install
from tests._support.tokens import (
    OTHER_SECRET,
    SECRET,
    channel_token,
    claims,
    connection_token,
    forge,
    public_pem,
    rsa_key,
    write_registry,
)
from tests.trio.helpers import HANDSHAKE, WsClient, fail_after, make_config, request

from .helpers import still_serving

JSON = [("content-type", "application/json")]
TRANSPORTS = ["long-polling", "websocket"]

BACKEND_SECRET = "access-security-backend-secret-42"
#: the registry (tokens.json): the seed's way, ext.authToken on each message
REGISTRY = {
    "alice": "alice-registry-token-7f3a",
    "bob": "bob-registry-token-91c2",
    "carol": "carol-registry-token-0d5e",
}
FORBIDDEN = "403:{channel}:Forbidden"
RULES = (
    # a one-segment channel, so that a /* subscription reaches a closed one
    ChannelRule("/admin", subscribe=("root",), publish=("root",)),
    ChannelRule(
        "/private/{a}/{b}", subscribe=("{a}", "{b}"), publish=("{a}", "{b}"), sender="from"
    ),
    ChannelRule("/private/**", subscribe="nobody", publish="nobody"),
    ChannelRule("/secret/**", subscribe="token", publish="server"),
    ChannelRule("/alerts/**", publish="server"),
)


# ------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Keys:
    """The credential files of one test, and the settings that name them."""

    directory: Path
    settings: AccessSettings

    def rs256(self) -> AccessSettings:
        """The same, with tokens checked by the public half of rsa_key() (RS256) instead."""
        jwt = JwtSettings(public_key_file=self.directory / "jwt.pub", leeway=0)
        return dataclasses.replace(self.settings, jwt=jwt)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    (tmp_path / "jwt.secret").write_bytes(SECRET)
    write_registry(tmp_path / "tokens.json", REGISTRY)
    (tmp_path / "backend.secret").write_text(BACKEND_SECRET + "\n")
    (tmp_path / "jwt.pub").write_bytes(public_pem(rsa_key()))
    settings = AccessSettings(
        rules=RULES,
        tokens=TokenFileSettings(file=tmp_path / "tokens.json"),
        jwt=JwtSettings(secret_file=tmp_path / "jwt.secret", leeway=0),
        backend_secret_file=tmp_path / "backend.secret",
    )
    return Keys(tmp_path, settings)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """The attacker's (or victim's) transport, where it could matter."""
    name: str = request.param
    return name


async def start_guarded(nursery: trio.Nursery, settings: AccessSettings) -> BayeuxServer:
    """A loopback server with ``settings`` installed, listening."""
    server = BayeuxServer(make_config())
    install(server, settings)
    started: BayeuxServer = await nursery.start(server.serve)
    assert started.port is not None
    return started


@pytest.fixture
async def server(nursery: trio.Nursery, keys: Keys) -> AsyncIterator[BayeuxServer]:
    """A server with ``keys.settings``, that must still serve others after the test."""
    started = await start_guarded(nursery, keys.settings)
    yield started
    with trio.fail_after(5):
        await still_serving(started)


def port_of(server: BayeuxServer) -> int:
    assert server.port is not None
    return server.port


# ------------------------------------------------------------------- tokens


def jwt_ext(token: str) -> dict[str, Any]:
    return {"auth": {"token": token}}


def registry_ext(user: str) -> dict[str, Any]:
    return {"authToken": REGISTRY[user]}


# ------------------------------------------------------------------ clients


class Client:
    """One Bayeux session over long-polling or WebSocket.

    Every response body or text frame it receives is kept in ``raw`` (the
    bytes as sent, before decoding), and every delivery in ``delivered``.
    """

    def __init__(self, port: int, transport: str) -> None:
        self.port = port
        self.transport = transport
        self.client_id = ""
        self.raw: list[bytes] = []
        self.delivered: list[dict[str, Any]] = []
        self._ids = (str(n) for n in itertools.count(1))
        self._ws: WsClient | None = None
        self._answers: dict[str, dict[str, Any]] = {}

    @classmethod
    async def open(
        cls, port: int, transport: str = "long-polling", ext: Any = None
    ) -> tuple[Client, dict[str, Any]]:
        """A client and its handshake's reply (successful or not)."""
        self = cls(port, transport)
        if transport == "websocket":
            self._ws = await WsClient.connect(port)
        message: dict[str, Any] = dict(HANDSHAKE)
        if ext is not None:
            message["ext"] = ext
        (reply,) = await self.send([message])
        if reply["successful"]:
            self.client_id = reply["clientId"]
        return self, reply

    @classmethod
    async def session(cls, port: int, transport: str = "long-polling", ext: Any = None) -> Client:
        """A client that has handshaken (with ``ext``) and made its first connect."""
        self, reply = await cls.open(port, transport, ext)
        assert reply["successful"] is True, reply
        (reply,) = await self.send([self.connect_message()])
        assert reply["successful"] is True, reply
        return self

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.aclose()

    async def expect_close(self) -> None:
        """The server closes this client's WebSocket (normally)."""
        assert self._ws is not None
        close = await self._ws.expect_close()
        assert close.code == 1000, close

    async def reopen(self) -> None:
        """A new WebSocket connection for the same client."""
        await self.aclose()
        self._ws = await WsClient.connect(self.port)

    @property
    def text(self) -> bytes:
        """Everything received so far."""
        return b"\n".join(self.raw)

    def connect_message(self) -> dict[str, Any]:
        return {"channel": "/meta/connect", "connectionType": self.transport}

    def _stamp(self, message: dict[str, Any]) -> str:
        if self.client_id and message["channel"] != "/meta/handshake":
            message.setdefault("clientId", self.client_id)
        message["id"] = next(self._ids)
        return str(message["id"])

    def _take(self, body: bytes) -> None:
        self.raw.append(body)
        for message in orjson.loads(body):
            if "successful" in message:
                self._answers[message.get("id", "")] = message
            else:
                self.delivered.append(message)

    async def send(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``messages`` (stamped with ids and the clientId); their replies, in order."""
        ids = [self._stamp(message) for message in messages]
        if self._ws is None:
            response = await request(
                self.port, "POST", "/faye", headers=JSON, body=orjson.dumps(messages)
            )
            assert response.status == 200, (response.status, response.body)
            self._take(response.body)
        else:
            await self._ws.send_json(messages)
            await self._read_until(lambda: all(i in self._answers for i in ids))
        return [self._answers.pop(i) for i in ids]

    async def held_connect(self) -> dict[str, Any]:
        """A /meta/connect the server holds; its reply, whenever it comes."""
        (reply,) = await self.send([self.connect_message()])
        return reply

    async def _read_until(self, done: Callable[[], bool]) -> None:
        assert self._ws is not None
        for _ in range(10_000):
            if done():
                return
            event = await self._ws.receive()
            if isinstance(event, Ping):
                await self._ws.send_raw(self._ws.ws.send(event.response()))
                continue
            assert isinstance(event, TextMessage), event
            self._take(event.data.encode())
        raise AssertionError("no reply")

    async def subscribe(self, subscription: str | list[str], ext: Any = None) -> dict[str, Any]:
        message: dict[str, Any] = {"channel": "/meta/subscribe", "subscription": subscription}
        if ext is not None:
            message["ext"] = ext
        (reply,) = await self.send([message])
        return reply

    async def publish(self, channel: str, data: Any, ext: Any = None) -> dict[str, Any]:
        message: dict[str, Any] = {"channel": channel, "data": data}
        if ext is not None:
            message["ext"] = ext
        (reply,) = await self.send([message])
        return reply

    async def receive_until(self, channel: str) -> list[dict[str, Any]]:
        """Every delivery received until one on ``channel`` has come.

        One server queues messages in the order they are published, so a
        marker published after the messages under test arrives after them:
        what this returns is everything this client was sent.
        """
        for _ in range(100):
            if any(m["channel"] == channel for m in self.delivered):
                break
            if self._ws is None:
                await self.send([self.connect_message()])
            else:
                await self._read_until(lambda: any(m["channel"] == channel for m in self.delivered))
        else:
            raise AssertionError(f"nothing on {channel}")
        got = self.delivered
        self.delivered = []
        return got


def subscriptions(server: BayeuxServer, client: Client) -> set[str]:
    session = server.engine.store.get(client.client_id)
    assert session is not None
    return set(session.subscriptions)


def data_of(delivered: list[dict[str, Any]], channel: str) -> list[Any]:
    return [m["data"] for m in delivered if m["channel"] == channel]


# --------------------------------- CVE-2020-11020 against a users-only channel


@fail_after(10)
async def test_cve_2020_11020_prefixed_subscribe_gets_no_users_only_channel(
    server: BayeuxServer, transport: str
) -> None:
    port = port_of(server)
    carol = await Client.session(port, transport, registry_ext("carol"))
    for channel in ["/meta/subscribe/x", "/meta/subscribe/", "/meta/subscribe/../"]:
        (reply,) = await carol.send([{"channel": channel, "subscription": "/private/alice/bob"}])
        assert reply["successful"] is False
        assert reply["error"] == f"403:{channel}:Forbidden channel"
    assert subscriptions(server, carol) == set()
    # the plain subscribe, as carol (her token on it) and as her session
    for ext in (registry_ext("carol"), None):
        reply = await carol.subscribe("/private/alice/bob", ext)
        assert reply["error"] == "403:/private/alice/bob:Forbidden"
    assert subscriptions(server, carol) == set()
    assert (await carol.subscribe("/chat/after"))["successful"] is True
    # alice's message to bob goes nowhere near carol
    alice = await Client.session(port, ext=jwt_ext(connection_token("alice")))
    assert (await alice.publish("/private/alice/bob", {"text": "for bob"}))["successful"] is True
    assert (await alice.publish("/chat/after", "marker"))["successful"] is True
    got = await carol.receive_until("/chat/after")
    assert [m["channel"] for m in got] == ["/chat/after"]
    assert b"for bob" not in carol.text
    await carol.aclose()


# ---------------------------------------------------------------- wildcards


@fail_after(15)
async def test_wildcards_never_reach_a_conversation_of_others(
    server: BayeuxServer, transport: str
) -> None:
    port = port_of(server)
    carol = await Client.session(port, transport, registry_ext("carol"))
    for pattern in ["/**", "/*", "/private/*", "/private/**", "/private/alice/*"]:
        for ext in (registry_ext("carol"), None):
            reply = await carol.subscribe(pattern, ext)
            assert reply["successful"] is False
            assert reply["error"] == FORBIDDEN.format(channel=pattern)
    # one forbidden channel refuses the whole list: nothing of it is subscribed
    reply = await carol.subscribe(["/chat/a", "/private/alice/bob"], registry_ext("carol"))
    assert reply["successful"] is False
    assert reply["error"] == "403:/private/alice/bob:Forbidden"
    reply = await carol.subscribe(["/private/alice/bob", "/chat/a"])
    assert reply["successful"] is False
    assert subscriptions(server, carol) == set()
    assert (await carol.subscribe("/chat/**"))["successful"] is True
    # the members: alice by JWT, bob by the registry; and an anonymous client
    alice = await Client.session(port, ext=jwt_ext(connection_token("alice")))
    bob = await Client.session(port, transport, registry_ext("bob"))
    anonymous = await Client.session(port)
    for member in (alice, bob):
        assert (await member.subscribe(["/private/alice/bob", "/chat/after"]))["successful"]
    assert (await anonymous.subscribe("/**"))["error"] == "403:/**:Forbidden"
    assert (await anonymous.subscribe("/chat/*"))["successful"] is True
    assert (await alice.publish("/private/alice/bob", {"text": "hi bob"}))["successful"] is True
    assert (await bob.publish("/chat/after", "marker"))["successful"] is True
    for member in (alice, bob):
        got = await member.receive_until("/chat/after")
        assert data_of(got, "/private/alice/bob") == [{"text": "hi bob", "from": "alice"}]
    for outsider in (carol, anonymous):
        got = await outsider.receive_until("/chat/after")
        assert [m["channel"] for m in got] == ["/chat/after"]
        assert b"hi bob" not in outsider.text
    await carol.aclose()
    await bob.aclose()


# ------------------------------------------------- token replay and leakage


@fail_after(15)
async def test_no_credential_is_ever_delivered_or_echoed(server: BayeuxServer) -> None:
    port = port_of(server)
    polled = await Client.session(port, "long-polling")
    streamed = await Client.session(port, "websocket")
    for subscriber in (polled, streamed):
        assert (await subscriber.subscribe(["/chat/room", "/chat/after"]))["successful"] is True
    alice_jwt = connection_token("alice")
    alice = await Client.session(port, ext=jwt_ext(alice_jwt))
    a_channel_token = channel_token("/secret/a")
    secrets = [alice_jwt, a_channel_token, BACKEND_SECRET, *REGISTRY.values(), "guessed-token"]
    # on a subscribe too: its reply must not echo them
    reply = await alice.subscribe("/secret/a", {"auth": {"channelToken": a_channel_token}})
    assert reply["successful"] is True
    credentials: list[dict[str, Any]] = [
        {"authToken": REGISTRY["alice"]},
        {"authToken": "guessed-token"},
        {"auth": {"token": alice_jwt}},
        {"auth": {"channelToken": a_channel_token}},
        {"auth": {"backend": BACKEND_SECRET}},
        {
            "authToken": REGISTRY["alice"],
            "auth": {
                "token": alice_jwt,
                "channelToken": a_channel_token,
                "backend": BACKEND_SECRET,
            },
        },
    ]
    for n, ext in enumerate(credentials):
        reply = await alice.publish("/chat/room", {"n": n}, {**ext, "trace": n})
        assert reply["successful"] is True, reply
    assert (await alice.publish("/chat/after", "marker"))["successful"] is True
    for subscriber in (polled, streamed):
        got = await subscriber.receive_until("/chat/after")
        assert [m.get("ext") for m in got if m["channel"] == "/chat/room"] == [
            {"trace": n} for n in range(len(credentials))
        ]
        for secret in secrets:
            assert secret.encode() not in subscriber.text
    for secret in secrets:
        assert secret.encode() not in alice.text  # no reply echoed one
    await streamed.aclose()


# ------------------------------------------------------------ JWT on the wire


def bad_token(name: str) -> str:
    """A connection token the HS256 server must refuse, made now."""
    now = time.time()
    if name.startswith("alg-"):  # unsigned, "alg" spelt as given
        return forge({"alg": name[len("alg-") :], "typ": "JWT"}, claims("alice"), None)
    if name == "expired":
        return connection_token("alice", exp=now - 1)
    if name == "not-yet-valid":
        return connection_token("alice", nbf=now + 60)
    if name == "issued-in-the-future":
        return connection_token("alice", iat=now + 60)
    if name == "wrong-key":
        return connection_token("alice", key=OTHER_SECRET)
    if name == "channel-token":
        return channel_token("/chat/a")
    if name == "no-sub":
        return connection_token(None)
    if name == "100-kb":
        # a good signature on 100 KB: refused for its size alone
        return connection_token("alice", pad="x" * 100_000)
    return {"garbage": "garbage", "dots": "a.b.c", "empty-parts": ".."}[name]


BAD_TOKENS = [
    "alg-none",
    "alg-None",
    "alg-NONE",
    "expired",
    "not-yet-valid",
    "issued-in-the-future",
    "wrong-key",
    "channel-token",
    "no-sub",
    "100-kb",
    "garbage",
    "dots",
    "empty-parts",
]


async def handshake_reply(server: BayeuxServer, transport: str, ext: Any) -> dict[str, Any]:
    """The reply to one handshake with ``ext`` (its client closed again)."""
    client, reply = await Client.open(port_of(server), transport, ext)
    await client.aclose()
    return reply


async def refused_handshake(server: BayeuxServer, transport: str, ext: Any) -> str:
    """Handshake with ``ext``; assert a 401 and no session; the error text."""
    sessions = len(server.engine.store)
    reply = await handshake_reply(server, transport, ext)
    assert reply["successful"] is False, reply
    assert reply["error"].startswith("401:"), reply
    assert reply["advice"]["reconnect"] == "handshake"
    assert "clientId" not in reply
    assert len(server.engine.store) == sessions
    error: str = reply["error"]
    return error


@pytest.mark.parametrize("name", BAD_TOKENS)
@fail_after(10)
async def test_a_bad_connection_token_is_a_401_handshake(
    server: BayeuxServer, name: str, transport: str
) -> None:
    token = bad_token(name)
    started = trio.current_time()
    error = await refused_handshake(server, transport, jwt_ext(token))
    assert trio.current_time() - started < 2  # the 100 KB one too: nothing slow happens
    assert token not in error
    # the same server takes a good token, and anonymous clients (the fixture's check)
    reply = await handshake_reply(server, transport, jwt_ext(connection_token("a")))
    assert reply["successful"] is True


@fail_after(10)
async def test_hs256_signed_with_the_rsa_public_key_is_refused_by_an_rs256_server(
    nursery: trio.Nursery, keys: Keys, transport: str
) -> None:
    """The classic algorithm confusion: the public key, which anyone has, as an HMAC secret."""
    server = await start_guarded(nursery, keys.rs256())
    mallory = claims("mallory")
    key = public_pem(rsa_key())
    for secret in (key, key.strip()):
        confused = forge({"alg": "HS256", "typ": "JWT"}, mallory, secret)
        assert await refused_handshake(server, transport, jwt_ext(confused)) == (
            "401::Authentication token invalid"
        )
    unsigned = forge({"alg": "none", "typ": "JWT"}, mallory, None)
    await refused_handshake(server, transport, jwt_ext(unsigned))
    # an HS256 token with the server's old shared secret: not an RS256 one either
    await refused_handshake(server, transport, jwt_ext(connection_token("mallory")))
    # what the server does accept: RS256 signed with the private key
    good = pyjwt.encode(claims("alice"), rsa_key(), algorithm="RS256")
    reply = await handshake_reply(server, transport, jwt_ext(good))
    assert reply["successful"] is True
    session = server.engine.store.get(reply["clientId"])
    assert session is not None
    assert session.user == "alice"
    await still_serving(server)


# ---------------------------------------------------------- sender spoofing


@fail_after(10)
async def test_a_spoofed_sender_is_overwritten_with_the_publishers_user(
    server: BayeuxServer, transport: str
) -> None:
    port = port_of(server)
    bob = await Client.session(port, ext=registry_ext("bob"))
    assert (await bob.subscribe(["/private/alice/bob", "/chat/after"]))["successful"] is True
    # alice by JWT, and alice by the registry token on each message (the seed's way)
    by_jwt = await Client.session(port, transport, jwt_ext(connection_token("alice")))
    by_registry = await Client.session(port, transport)
    for alice, ext in ((by_jwt, None), (by_registry, registry_ext("alice"))):
        for data in ({"from": "bob", "text": "spoof"}, {"text": "plain"}, {"from": None}):
            reply = await alice.publish("/private/alice/bob", data, ext)
            assert reply["successful"] is True, reply
        await alice.aclose()
    # whoever bob is told about, it is not himself: mallory cannot publish at all
    mallory = await Client.session(port, transport)
    reply = await mallory.publish("/private/alice/bob", {"from": "alice", "text": "x"})
    assert reply["error"] == "403:/private/alice/bob:Forbidden"
    await mallory.aclose()
    assert (await bob.publish("/chat/after", "marker"))["successful"] is True
    got = data_of(await bob.receive_until("/chat/after"), "/private/alice/bob")
    assert (
        got
        == [
            {"from": "alice", "text": "spoof"},
            {"from": "alice", "text": "plain"},
            {"from": "alice"},
        ]
        * 2
    )


# ------------------------------------------------------------ channel tokens


@fail_after(10)
async def test_a_channel_token_opens_its_one_channel_only(
    server: BayeuxServer, transport: str
) -> None:
    port = port_of(server)
    client = await Client.session(port, transport)
    for_a = {"auth": {"channelToken": channel_token("/secret/a")}}
    for other in ["/secret/b", "/secret/a/x", "/secret/*", "/secret/**", "/**", "/private/a/b"]:
        reply = await client.subscribe(other, for_a)
        assert reply["successful"] is False
        assert reply["error"] == FORBIDDEN.format(channel=other)
    # one list: the token's channel and another
    assert (await client.subscribe(["/secret/a", "/secret/b"], for_a))["successful"] is False
    assert subscriptions(server, client) == set()
    # a channel token naming a pattern is no channel token at all
    for pattern in ["/secret/*", "/secret/**"]:
        reply = await client.subscribe(pattern, {"auth": {"channelToken": channel_token(pattern)}})
        assert reply["error"] == "401::Channel token invalid"
    # nor is a connection token, or an expired one, or one on the handshake
    as_channel = {"auth": {"channelToken": connection_token("alice")}}
    assert (await client.subscribe("/secret/a", as_channel))["successful"] is False
    expired = {"auth": {"channelToken": channel_token("/secret/a", exp=time.time() - 1)}}
    assert (await client.subscribe("/secret/a", expired))["error"] == "401::Channel token expired"
    await refused_handshake(server, transport, jwt_ext(channel_token("/secret/a")))
    huge = {"auth": {"channelToken": channel_token("/secret/a", pad="x" * 100_000)}}
    assert (await client.subscribe("/secret/a", huge))["error"] == "401::Channel token invalid"
    assert subscriptions(server, client) == set()
    # its own channel it opens, for subscribing only (publish = "server")
    assert (await client.subscribe("/secret/a", for_a))["successful"] is True
    reply = await client.publish("/secret/a", "x", for_a)
    assert reply["error"] == "403:/secret/a:Forbidden"
    assert subscriptions(server, client) == {"/secret/a"}
    await client.aclose()


# ------------------------------------------------------------ backend secret


WRONG_SECRETS: list[tuple[str, Any]] = [
    ("missing", {}),
    ("one-character-off", {"auth": {"backend": BACKEND_SECRET[:-1] + "x"}}),
    ("prefix", {"auth": {"backend": BACKEND_SECRET[:16]}}),
    ("longer", {"auth": {"backend": BACKEND_SECRET + "x"}}),
    ("with-newline", {"auth": {"backend": BACKEND_SECRET + "\n"}}),
    ("empty", {"auth": {"backend": ""}}),
    ("non-ascii", {"auth": {"backend": "é" * 40}}),
    ("number", {"auth": {"backend": 12345678901234567890}}),
    ("list", {"auth": {"backend": [BACKEND_SECRET]}}),
    ("object", {"auth": {"backend": {"secret": BACKEND_SECRET}}}),
    ("true", {"auth": {"backend": True}}),
    ("null", {"auth": {"backend": None}}),
    ("ext.backend", {"backend": BACKEND_SECRET}),
    ("ext.authToken", {"authToken": BACKEND_SECRET}),
    ("ext.auth.token", {"auth": {"token": BACKEND_SECRET}}),
    ("ext.auth as the secret", {"auth": BACKEND_SECRET}),
    ("ext as the secret", BACKEND_SECRET),
]


@fail_after(15)
async def test_only_the_backend_secret_in_its_place_publishes_on_server_channels(
    server: BayeuxServer, transport: str
) -> None:
    port = port_of(server)
    subscriber = await Client.session(port, transport)
    assert (await subscriber.subscribe(["/alerts/disk", "/chat/after"]))["successful"] is True
    sender = await Client.session(port, transport)
    for name, ext in WRONG_SECRETS:
        reply = await sender.publish("/alerts/disk", name, ext)
        assert reply["error"] == "403:/alerts/disk:Forbidden", name
    # the secret elsewhere in the message: at the top, or in data
    for misplaced in ({"auth": {"backend": BACKEND_SECRET}}, {"backend": BACKEND_SECRET}):
        (reply,) = await sender.send([{"channel": "/alerts/disk", "data": "top", **misplaced}])
        assert reply["error"] == "403:/alerts/disk:Forbidden"
    reply = await sender.publish("/alerts/disk", {"auth": {"backend": BACKEND_SECRET}})
    assert reply["error"] == "403:/alerts/disk:Forbidden"
    # the right one: from a session, and as curl sends it (no clientId)
    right = {"auth": {"backend": BACKEND_SECRET}}
    assert (await sender.publish("/alerts/disk", "from a session", right))["successful"] is True
    (reply,) = await sender.send([{"channel": "/alerts/disk", "data": "by curl", "ext": right}])
    assert reply["successful"] is True
    response = await request(
        port,
        "POST",
        "/faye",
        headers=JSON,
        body=orjson.dumps([{"channel": "/alerts/disk", "data": "no session", "ext": right}]),
    )
    assert orjson.loads(response.body)[0]["successful"] is True
    assert BACKEND_SECRET.encode() not in response.body
    assert (await sender.publish("/chat/after", "marker"))["successful"] is True
    got = await subscriber.receive_until("/chat/after")
    assert data_of(got, "/alerts/disk") == ["from a session", "by curl", "no session"]
    assert all("ext" not in m for m in got)
    assert BACKEND_SECRET.encode() not in subscriber.text
    assert BACKEND_SECRET.encode() not in sender.text
    await subscriber.aclose()
    await sender.aclose()


# ------------------------------------------------------------------- expiry


@fail_after(15)
async def test_a_session_whose_token_expires_is_ended_and_asked_to_handshake(
    server: BayeuxServer, transport: str
) -> None:
    expires = time.time() + 2
    client = await Client.session(
        port_of(server), transport, jwt_ext(connection_token("alice", exp=expires))
    )
    assert (await client.subscribe("/chat/a"))["successful"] is True
    reply = await client.held_connect()
    ended = time.time()
    assert reply["successful"] is True
    assert reply["advice"]["reconnect"] == "handshake"
    # ended after exp (never before), within about a second (the watch's period)
    assert expires <= ended < expires + 2.5, ended - expires
    assert server.engine.store.get(client.client_id) is None
    if transport == "websocket":
        # the session's stream goes with it; the client comes back on a new one
        await client.expect_close()
        await client.reopen()
    (reply,) = await client.send([client.connect_message()])
    assert reply["successful"] is False
    assert reply["error"] == f"401:{client.client_id}:Unknown client"
    assert reply["advice"]["reconnect"] == "handshake"
    reply = await client.subscribe("/chat/b")
    assert reply["error"] == f"401:{client.client_id}:Unknown client"
    await client.aclose()


# ---------------------------------------------------------------- revocation


@fail_after(10)
async def test_a_user_removed_from_the_registry_loses_its_live_sessions_rights(
    server: BayeuxServer, keys: Keys
) -> None:
    port = port_of(server)
    alice = await Client.session(port, ext=registry_ext("alice"))
    assert (await alice.subscribe("/private/alice/bob"))["successful"] is True
    assert keys.settings.tokens is not None
    revoked = {user: token for user, token in REGISTRY.items() if user != "alice"}
    keys.settings.tokens.file.write_text(json.dumps(revoked))

    # the file is re-read within a second: a new handshake with the token fails then
    for _ in range(50):
        _, reply = await Client.open(port, ext=registry_ext("alice"))
        if reply["successful"] is False:
            break
        await trio.sleep(0.1)
    else:
        raise AssertionError("tokens.json was never re-read")
    reply = await alice.publish("/private/alice/bob", {"text": "after"}, registry_ext("alice"))
    assert reply["successful"] is False
