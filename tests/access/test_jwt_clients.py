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

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio

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
from tests._support.tokens import (
    BAD_CONNECTION_TOKENS,
    SECRET,
    bad_connection_token,
    channel_token,
    claims,
    connection_token,
    public_pem,
    rsa_key,
)
from tests._support.waiting import eventually
from tests.trio.helpers import fail_after, make_config

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
async def rs_server(nursery: trio.Nursery, tmp_path: Path) -> Served:
    """RS256 with the public key of :func:`rsa_key` in a file."""
    path = tmp_path / "jwt.pub.pem"
    path.write_bytes(public_pem(rsa_key()))
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
    token = Tokens(connection_token("alice", info={"name": "Alice"}))
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
    async with open_client(hs_server.url, token=Tokens(connection_token("bob")), **FAST) as bob:
        await bob.wait_connected()
        with pytest.raises(SubscribeError) as refused:
            await bob.subscribe("/alice/inbox")
        assert refused.value.error == FORBIDDEN.format(channel="/alice/inbox")


@fail_after(20)
async def test_the_token_goes_beside_other_ext_keys_and_where_configured(
    nursery: trio.Nursery, secret_file: Path
) -> None:
    served = await serve(nursery, JwtSettings(secret_file=secret_file, field="credentials.jwt"))
    token = connection_token("alice")
    async with open_client(
        served.url, token=lambda: token, token_field="credentials.jwt", ack=True, **FAST
    ) as alice:
        await alice.wait_connected()
        await alice.subscribe("/alice/inbox")
    assert served.handshakes.ext == [{"ack": True, "credentials": {"jwt": token}}]


@fail_after(20)
async def test_an_rs256_token_is_accepted_by_the_public_key(rs_server: Served) -> None:
    token = jwt.encode(claims("alice"), rsa_key(), algorithm="RS256")
    async with open_client(rs_server.url, token=lambda: token, **FAST) as alice:
        await alice.wait_connected()
        await alice.subscribe("/alice/inbox")


# --------------------------------------------------------------- bad tokens


#: the refusals every client suite shows, and two of this client's own
REFUSALS = {
    **BAD_CONNECTION_TOKENS,
    "a channel token": "401::Authentication token invalid",
    "no token": "401::Authentication required",
}


@pytest.mark.parametrize(("case", "error"), REFUSALS.items())
@fail_after(20)
async def test_a_bad_token_is_refused_at_the_handshake(
    hs_server: Served, rs_server: Served, case: str, error: str
) -> None:
    if case == "a channel token":  # logs nobody in
        server, token = "hs", channel_token("/secret/room")
    elif case == "no token":  # where one is required
        server, token = "hs", None
    else:
        server, token = bad_connection_token(case)
    served = hs_server if server == "hs" else rs_server
    assert await first_refusal(served.url, lambda: token) == error


@fail_after(20)
async def test_a_failing_callback_is_logged_and_the_client_tries_again(
    hs_server: Served, handshake_log: pytest.LogCaptureFixture
) -> None:
    token = Tokens(RuntimeError("the token service is down"), connection_token("alice"))
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


def as_carol(
    served: Served, tickets: dict[str, str]
) -> contextlib.AbstractAsyncContextManager[BayeuxClient]:
    """carol's client, with a channel token on the subscribe to each channel of ``tickets``."""
    token = connection_token("carol")
    return open_client(served.url, token=lambda: token, extensions=[ChannelTokens(tickets)], **FAST)


@fail_after(20)
async def test_a_channel_token_opens_its_channel(hs_server: Served) -> None:
    tickets = {"/secret/mine": channel_token("/secret/mine")}
    async with as_carol(hs_server, tickets) as carol, carol.subscribe("/secret/mine") as mine:
        hs_server.server.publish("/secret/mine", "psst")
        assert (await mine.receive()).data == "psst"


@fail_after(20)
async def test_a_channel_token_for_another_channel_is_refused(hs_server: Served) -> None:
    async with as_carol(hs_server, {"/secret/mine": channel_token("/secret/theirs")}) as carol:
        for channel in ("/secret/mine", "/secret/none"):  # another's token; none at all
            with pytest.raises(SubscribeError) as refused:
                await carol.subscribe(channel)
            assert refused.value.error == FORBIDDEN.format(channel=channel)


# ------------------------------------------------------------------ expiry


@TRANSPORTS
@fail_after(30)
async def test_a_session_whose_token_expires_handshakes_again_with_a_fresh_one(
    hs_server: Served, transport: str
) -> None:
    short, fresh = connection_token("alice", lifetime=3), connection_token("alice")
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
