"""install(): hooks, identities and rules together on a real server.

The backend hooks learn who the client is from the same place the rules do
(the connection token on handshake, the session afterwards), are asked
before the rules, and a rewrite by the backend is still stamped with the
sender.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import trio

from bayeux_core import ChannelRule
from bayeux_trio import BayeuxServer
from bayeux_trio.access import AccessSettings, JwtSettings, TokenFileSettings, install
from tests.trio.helpers import HANDSHAKE, LongPoller, bayeux, fail_after, make_config

from .backend import Backend, allow, by_channel, refuse, rewrite, running_backend

SECRET = "k" * 40


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with running_backend() as served:
        yield served


def settings(tmp_path: Path, backend: Backend, **extra: Any) -> AccessSettings:
    secret = tmp_path / "jwt.secret"
    secret.write_text(SECRET)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"carol": "carol-token"}))
    return AccessSettings(
        jwt=JwtSettings(secret_file=secret),
        tokens=TokenFileSettings(file=tokens),
        rules=(
            ChannelRule("/notes/{user}", subscribe=("{user}",), publish=("{user}",), sender="by"),
        ),
        hooks={
            "handshake": backend.hook("/handshake", allow()),
            "subscribe": backend.hook("/subscribe", allow()),
            "publish": backend.hook("/publish", rewrite({"text": "checked"})),
        },
        **extra,
    )


async def serve(nursery: trio.Nursery, access: AccessSettings) -> BayeuxServer:
    server = BayeuxServer(make_config())
    install(server, access)
    await nursery.start(server.serve)
    return server


def token(user: str) -> str:
    return pyjwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


@fail_after(15)
async def test_hooks_are_told_the_user_and_rules_still_decide(
    nursery: trio.Nursery, tmp_path: Path, backend: Backend
) -> None:
    server = await serve(nursery, settings(tmp_path, backend))
    assert server.port is not None
    (shaken,) = await bayeux(
        server.port, [{**HANDSHAKE, "ext": {"auth": {"token": token("alice")}}}]
    )
    assert shaken["successful"] is True, shaken
    alice = LongPoller(server.port)
    alice.client_id = shaken["clientId"]
    (ok,) = await alice.send(
        [
            {
                "channel": "/meta/subscribe",
                "clientId": alice.client_id,
                "subscription": "/notes/alice",
            }
        ]
    )
    assert ok["successful"] is True, ok
    (no,) = await alice.send(
        [{"channel": "/meta/subscribe", "clientId": alice.client_id, "subscription": "/notes/bob"}]
    )
    assert no["error"] == "403:/notes/bob:Forbidden"
    # The backend was asked about both (hooks first, then the rules).
    assert [d["user"] for d in backend.descriptions("/handshake")] == ["alice"]
    assert [
        (d["user"], d["channel"], d["address"]) for d in backend.descriptions("/subscribe")
    ] == [
        ("alice", "/notes/alice", "127.0.0.1"),
        ("alice", "/notes/bob", "127.0.0.1"),
    ]
    # A publish: rewritten by the backend, then stamped with its sender.
    (published,) = await alice.send(
        [
            {
                "channel": "/notes/alice",
                "clientId": alice.client_id,
                "data": {"text": "raw", "by": "bob"},
            }
        ]
    )
    assert published["successful"] is True, published
    replies = await alice.connect()
    assert [r["data"] for r in replies if r.get("channel") == "/notes/alice"] == [
        {"text": "checked", "by": "alice"}
    ]
    # A registry token names the user of one message, for the hooks too.
    carol = LongPoller(server.port)
    await carol.handshake()
    await carol.send(
        [
            {
                "channel": "/meta/subscribe",
                "clientId": carol.client_id,
                "subscription": "/notes/carol",
                "ext": {"authToken": "carol-token"},
            }
        ]
    )
    assert backend.descriptions("/subscribe")[-1]["user"] == "carol"
    # The hooks see the sender as the rules do: a token that names nobody
    # makes the message anonymous, even from alice's session.
    await alice.send(
        [
            {
                "channel": "/meta/subscribe",
                "clientId": alice.client_id,
                "subscription": "/notes/alice",
                "ext": {"authToken": "stolen-or-revoked"},
            }
        ]
    )
    assert backend.descriptions("/subscribe")[-1]["user"] is None


@fail_after(15)
async def test_a_backend_s_refusal_is_the_error_the_client_sees(
    nursery: trio.Nursery, tmp_path: Path, backend: Backend
) -> None:
    access = settings(tmp_path, backend)
    hooks = dict(access.hooks)
    hooks["subscribe"] = backend.hook(
        "/subscribe", by_channel({"/notes/bob": refuse("403::Ask bob first")}, allow())
    )
    server = await serve(nursery, dataclasses.replace(access, hooks=hooks))
    assert server.port is not None
    (shaken,) = await bayeux(
        server.port, [{**HANDSHAKE, "ext": {"auth": {"token": token("alice")}}}]
    )
    alice = LongPoller(server.port)
    alice.client_id = shaken["clientId"]
    subscribe = {"channel": "/meta/subscribe", "clientId": alice.client_id}
    # Both the backend and the rules refuse /notes/bob: the backend's words.
    (no,) = await alice.send([{**subscribe, "subscription": "/notes/bob"}])
    assert no["successful"] is False
    assert no["error"] == "403::Ask bob first"
    # The backend allows /notes/carol, the rules refuse it.
    (no,) = await alice.send([{**subscribe, "subscription": "/notes/carol"}])
    assert no["error"] == "403:/notes/carol:Forbidden"
    (ok,) = await alice.send([{**subscribe, "subscription": "/notes/alice"}])
    assert ok["successful"] is True, ok


@fail_after(15)
async def test_an_authenticated_server_refuses_anonymous_handshakes(
    nursery: trio.Nursery, tmp_path: Path, backend: Backend
) -> None:
    server = await serve(nursery, settings(tmp_path, backend, handshake="authenticated"))
    assert server.port is not None
    (refused,) = await bayeux(server.port, [HANDSHAKE])
    assert refused["successful"] is False
    assert refused["error"] == "401::Authentication required"
    assert refused["advice"]["reconnect"] == "handshake"
    (accepted,) = await bayeux(server.port, [{**HANDSHAKE, "ext": {"authToken": "carol-token"}}])
    assert accepted["successful"] is True


@fail_after(20)
async def test_publish_sync_with_a_token_to_an_authenticated_server(
    nursery: trio.Nursery, tmp_path: Path, backend: Backend
) -> None:
    from bayeux_trio import PublishError, publish_sync

    access = settings(tmp_path, backend, handshake="authenticated")
    server = await serve(nursery, access)
    received: list[Any] = []
    await server.get_client().subscribe("/notes/alice", lambda channel, data: received.append(data))
    call = functools.partial(
        publish_sync, server.url, "/notes/alice", {"text": "x"}, token=lambda: token("alice")
    )
    await trio.to_thread.run_sync(call)
    assert received == [{"text": "checked", "by": "alice"}]
    # The server's own client is the application: any channel, no token.
    await server.get_client().publish("/notes/alice", {"text": "from the server"})
    assert received[-1] == {"text": "checked"}
    refused = functools.partial(publish_sync, server.url, "/notes/alice", 1, timeout=2)
    with pytest.raises((PublishError, TimeoutError)):
        await trio.to_thread.run_sync(refused)
