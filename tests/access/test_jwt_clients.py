"""JWT over the wire with our Python client: ``open_client(token=...)`` against
a server with :func:`bayeux_trio.access.install`.

Each test starts a BayeuxServer in-process on 127.0.0.1, port 0, with JWT
access control (the secret or public key in a file under ``tmp_path``), and
talks to it with :func:`bayeux_trio.open_client`. The unit-level cases of the
verifier are in test_jwt.py; here each case is what a client sees: a
handshake refused with the server's ``401::...`` (``last_error`` and
:class:`~bayeux_core.HandshakeFailed`), a subscription refused with ``403``,
and a session whose token expires handshaking again with a fresh token from
its callback, and going on receiving.

Expiry is wall time (JWT ``exp``), so the expiry test waits for it: about 3 s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bayeux_core import (
    ChannelRule,
    EngineConfig,
    Event,
    Extension,
    HandshakeFailed,
    HandshakeSucceeded,
    Message,
    MessageContext,
    Subscribed,
)
from bayeux_trio import BayeuxClient, BayeuxServer, SubscribeError, open_client
from bayeux_trio.access import AccessSettings, JwtSettings, install
from tests._support.waiting import eventually
from tests.trio.helpers import fail_after, make_config

SECRET = b"jwt-clients-test-secret-" + b"k" * 24  # 48 bytes: enough for HS256
OTHER_SECRET = b"another-secret-nobody-here-uses-" + b"z" * 16
FORBIDDEN = "403:{channel}:Forbidden"
#: fast retries, so that a refused handshake is tried again at once
FAST: dict[str, Any] = {"retry": 0.05, "max_retry": 0.2, "connect_timeout": 2.0}
TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "long-polling"])
RULES = (
    # only the user named alice may read her inbox: shows the session's user
    ChannelRule("/alice/**", subscribe=("alice",)),
    # a channel token opens one of these
    ChannelRule("/secret/**", subscribe="token"),
)


# ------------------------------------------------------------------ tokens


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def by_hand(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A compact JWS signed with HMAC-SHA256 under ``key`` (None: unsigned),
    as an attacker makes one: PyJWT refuses to make these."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def claims(user: str = "alice", *, lifetime: float = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "iat": now - 5, "exp": now + int(lifetime), **extra}


def hs_token(user: str = "alice", *, lifetime: float = 3600, **extra: Any) -> str:
    return jwt.encode(claims(user, lifetime=lifetime, **extra), SECRET, algorithm="HS256")


def channel_token(channel: str) -> str:
    now = int(time.time())
    return jwt.encode({"channel": channel, "exp": now + 3600}, SECRET, algorithm="HS256")


class ChannelTokens(Extension):
    """``ext.auth.channelToken`` on the subscribe to each channel it has a token for."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/subscribe":
            token = self.tokens.get(str(message.get("subscription")))
            if token is not None:
                ext = dict(message.get("ext") or {})
                ext["auth"] = {**ext.get("auth", {}), "channelToken": token}
                message["ext"] = ext
        return message


class Handshakes(Extension):
    """Records each handshake's ``ext`` as the server received it (runs first)."""

    outgoing_deliveries = False

    def __init__(self) -> None:
        self.ext: list[Any] = []

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/handshake":
            self.ext.append(json.loads(json.dumps(message.get("ext"))))
        return message


class Tokens:
    """A token callback: hands out ``tokens`` in turn (the last one again and
    again), raising for an exception among them; counts its calls."""

    def __init__(self, *tokens: str | Exception | None) -> None:
        self.tokens = list(tokens)
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        token = self.tokens[min(self.calls, len(self.tokens)) - 1]
        if isinstance(token, Exception):
            raise token
        return token


# ------------------------------------------------------------------ servers


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwt.secret"
    path.write_bytes(SECRET + b"\n")
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


class Served:
    """A server with access control, and what it saw."""

    def __init__(self, server: BayeuxServer, handshakes: Handshakes) -> None:
        self.server = server
        self.handshakes = handshakes
        self.events: list[Event] = []
        server.add_listener(self.events.append)

    @property
    def url(self) -> str:
        return self.server.url

    def subscribed(self, client: BayeuxClient, channel: str) -> bool:
        client_id = client.client_id
        return client_id is not None and Subscribed(client_id, channel) in self.events


async def serve(nursery: trio.Nursery, jwt_settings: JwtSettings) -> Served:
    """Only clients with a good token may handshake; RULES on the channels."""
    # A short error interval: a client told to handshake again waits that long.
    engine = EngineConfig(timeout=5, error_interval=0.2, presence=("/room/**",))
    handshakes = Handshakes()
    server = BayeuxServer(make_config(engine=engine), extensions=[handshakes])
    settings = AccessSettings(rules=RULES, handshake="authenticated", jwt=jwt_settings)
    install(server, settings)
    await nursery.start(server.serve)
    return Served(server, handshakes)


@pytest.fixture
async def hs_server(nursery: trio.Nursery, secret_file: Path) -> Served:
    """HS256 with the secret in a file; the clock leeway is 0, so that
    expiry is on time to the second."""
    return await serve(nursery, JwtSettings(secret_file=secret_file, leeway=0))


@pytest.fixture
async def rs_server(nursery: trio.Nursery, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Served:
    """RS256 with the public key in a file."""
    path = tmp_path / "jwt.pub.pem"
    path.write_bytes(public_pem(rsa_key))
    return await serve(nursery, JwtSettings(public_key_file=path))


@pytest.fixture
def handshake_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="bayeux.client"):
        yield caplog


async def first_refusal(url: str, token: Callable[[], str | None]) -> str:
    """Handshake with ``token``; the error of the first refusal, after
    checking the client shows it and tries again (a refusal is not final)."""
    failures: list[HandshakeFailed] = []
    async with open_client(url, token=token, **FAST) as client:
        client.on(HandshakeFailed, failures.append)
        await eventually(lambda: len(failures) >= 2, seconds=10)
        assert not client.connected
        assert client.client_id is None
        assert client.last_error == f"handshake refused: {failures[0].error}"
        assert not any(failure.final for failure in failures)
    return failures[0].error


# -------------------------------------------------------------- good tokens


@TRANSPORTS
@fail_after(20)
async def test_a_good_token_names_the_session(hs_server: Served, transport: str) -> None:
    token = Tokens(hs_token("alice", info={"name": "Alice"}))
    async with open_client(hs_server.url, token=token, transports=[transport], **FAST) as alice:
        await alice.wait_connected()
        assert token.calls == 1
        # The rule lets only alice read /alice/**: the session's user is the token's sub.
        async with alice.subscribe("/alice/inbox") as inbox:
            hs_server.server.publish("/alice/inbox", "for alice")
            assert (await inbox.receive()).data == "for alice"
        # Presence shows the user and the token's public info.
        async with alice.subscribe("/room/a"), alice.presence("/room/a") as room:
            assert dict(room.members) == {"alice": {"name": "Alice"}}
    # The token was where the server looks for it, beside the client's own ext.
    assert hs_server.handshakes.ext == [{"auth": {"token": token.tokens[0]}}]


@fail_after(20)
async def test_another_users_token_is_refused_alices_channel(hs_server: Served) -> None:
    async with open_client(hs_server.url, token=Tokens(hs_token("bob")), **FAST) as bob:
        await bob.wait_connected()
        with pytest.raises(SubscribeError) as refused:
            await bob.subscribe("/alice/inbox")
        assert refused.value.error == FORBIDDEN.format(channel="/alice/inbox")


@fail_after(20)
async def test_the_token_goes_beside_other_ext_keys_and_where_configured(
    nursery: trio.Nursery, secret_file: Path
) -> None:
    served = await serve(nursery, JwtSettings(secret_file=secret_file, field="credentials.jwt"))
    token = hs_token("alice")
    async with open_client(
        served.url, token=lambda: token, token_field="credentials.jwt", ack=True, **FAST
    ) as alice:
        await alice.wait_connected()
        await alice.subscribe("/alice/inbox")
    assert served.handshakes.ext == [{"ack": True, "credentials": {"jwt": token}}]


@fail_after(20)
async def test_an_rs256_token_is_accepted_by_the_public_key(
    rs_server: Served, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(claims("alice"), rsa_key, algorithm="RS256")
    async with open_client(rs_server.url, token=lambda: token, **FAST) as alice:
        await alice.wait_connected()
        await alice.subscribe("/alice/inbox")


# --------------------------------------------------------------- bad tokens


@fail_after(20)
async def test_an_expired_token_is_refused(hs_server: Served) -> None:
    expired = hs_token("alice", lifetime=-60)
    error = await first_refusal(hs_server.url, lambda: expired)
    assert error == "401::Authentication token expired"


@fail_after(20)
async def test_a_token_signed_with_another_key_is_refused(hs_server: Served) -> None:
    forged = jwt.encode(claims("alice"), OTHER_SECRET, algorithm="HS256")
    error = await first_refusal(hs_server.url, lambda: forged)
    assert error == "401::Authentication token invalid"


@fail_after(20)
async def test_an_unsigned_token_alg_none_is_refused(hs_server: Served) -> None:
    unsigned = by_hand({"alg": "none", "typ": "JWT"}, claims("alice"), None)
    error = await first_refusal(hs_server.url, lambda: unsigned)
    assert error == "401::Authentication token invalid"


@fail_after(20)
async def test_hs256_signed_with_the_public_key_is_refused(
    rs_server: Served, rsa_key: rsa.RSAPrivateKey
) -> None:
    # The classic confusion: the server's public key (which anyone may have)
    # used as an HMAC secret.
    confused = by_hand({"alg": "HS256", "typ": "JWT"}, claims("alice"), public_pem(rsa_key))
    error = await first_refusal(rs_server.url, lambda: confused)
    assert error == "401::Authentication token invalid"


@fail_after(20)
async def test_a_channel_token_does_not_log_anybody_in(hs_server: Served) -> None:
    ticket = channel_token("/secret/room")
    error = await first_refusal(hs_server.url, lambda: ticket)
    assert error == "401::Authentication token invalid"


@fail_after(20)
async def test_no_token_where_one_is_required_is_refused(hs_server: Served) -> None:
    error = await first_refusal(hs_server.url, lambda: None)
    assert error == "401::Authentication required"


@fail_after(20)
async def test_a_failing_callback_is_logged_and_the_client_tries_again(
    hs_server: Served, handshake_log: pytest.LogCaptureFixture
) -> None:
    token = Tokens(RuntimeError("the token service is down"), hs_token("alice"))
    failures: list[HandshakeFailed] = []
    async with open_client(hs_server.url, token=token, **FAST) as alice:
        alice.on(HandshakeFailed, failures.append)
        await alice.wait_connected()
        await alice.subscribe("/alice/inbox")
    assert token.calls == 2
    assert [failure.error for failure in failures] == ["401::Authentication required"]
    (record,) = [r for r in handshake_log.records if "token callback failed" in r.getMessage()]
    assert record.name == "bayeux.client"
    assert record.exc_info is not None
    assert "the token service is down" in str(record.exc_info[1])
    # The first handshake went without a token; the second with it.
    assert hs_server.handshakes.ext == [None, {"auth": {"token": token.tokens[1]}}]


# ----------------------------------------------------------- channel tokens


@fail_after(20)
async def test_a_channel_token_opens_its_channel(hs_server: Served) -> None:
    tickets = ChannelTokens({"/secret/mine": channel_token("/secret/mine")})
    async with (
        open_client(
            hs_server.url, token=lambda: hs_token("carol"), extensions=[tickets], **FAST
        ) as carol,
        carol.subscribe("/secret/mine") as mine,
    ):
        hs_server.server.publish("/secret/mine", "psst")
        assert (await mine.receive()).data == "psst"


@fail_after(20)
async def test_a_channel_token_for_another_channel_is_refused(hs_server: Served) -> None:
    tickets = ChannelTokens({"/secret/mine": channel_token("/secret/theirs")})
    async with open_client(
        hs_server.url, token=lambda: hs_token("carol"), extensions=[tickets], **FAST
    ) as carol:
        with pytest.raises(SubscribeError) as refused:
            await carol.subscribe("/secret/mine")
        assert refused.value.error == FORBIDDEN.format(channel="/secret/mine")
        with pytest.raises(SubscribeError) as refused:
            await carol.subscribe("/secret/none")  # no token at all
        assert refused.value.error == FORBIDDEN.format(channel="/secret/none")


# ------------------------------------------------------------------ expiry


@TRANSPORTS
@fail_after(30)
async def test_a_session_whose_token_expires_handshakes_again_with_a_fresh_one(
    hs_server: Served, transport: str
) -> None:
    short, fresh = hs_token("alice", lifetime=3), hs_token("alice")
    token = Tokens(short, fresh)
    sessions: list[str] = []
    async with open_client(hs_server.url, token=token, transports=[transport], **FAST) as alice:
        alice.on(HandshakeSucceeded, lambda event: sessions.append(event.client_id))
        async with alice.subscribe("/alice/inbox") as inbox:
            hs_server.server.publish("/alice/inbox", "before")
            assert (await inbox.receive()).data == "before"
            first = alice.client_id
            # The server ends the session at expiry (reconnect: handshake);
            # the client calls back for a token and handshakes again.
            await eventually(lambda: len(sessions) >= 2, seconds=10)
            # (a handshake lost with the closing WebSocket is sent again: a call each)
            assert token.calls >= 2
            assert sessions[-1] != first
            # ... and subscribes again by itself (as alice: the rule checks).
            await eventually(lambda: hs_server.subscribed(alice, "/alice/inbox"), seconds=5)
            hs_server.server.publish("/alice/inbox", "after")
            assert (await inbox.receive()).data == "after"
    assert hs_server.handshakes.ext[:2] == [
        {"auth": {"token": short}},
        {"auth": {"token": fresh}},
    ]


# --------------------------------------------------------------- arguments


def test_the_token_field_must_be_a_dotted_path() -> None:
    for field in ("", "auth.", ".token", "auth..token"):
        with pytest.raises(ValueError, match="token_field"):
            BayeuxClient("http://127.0.0.1:1/faye", token=lambda: "t", token_field=field)


def test_the_token_callback_must_be_a_plain_function() -> None:
    async def token() -> str:
        return "t"

    with pytest.raises(TypeError, match="plain function"):
        BayeuxClient("http://127.0.0.1:1/faye", token=token)  # type: ignore[arg-type]
