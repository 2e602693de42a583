"""Access control on two nodes of one Redis: a session's rights travel with it (issue 17).

A long-polling session handshakes on node A and sends everything after that
to node B, which adopts it from Redis. B has seen no credential: what it
knows of the session (the user, the channels its connection token grants,
when that token expires) came over the bus with the session record
(docs/access.md, "Cluster"). So B must admit and refuse exactly as A would,
and B must end the session when its token expires.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import trio

from bayeux_core import ChannelRule, EngineConfig
from bayeux_trio import BayeuxServer
from bayeux_trio.access import AccessSettings, JwtSettings, TokenFileSettings, install
from bayeux_trio.redis import RedisBus
from tests.trio.helpers import HANDSHAKE, bayeux, deliveries, fail_after, make_config

from ._support import namespace
from .conftest import RedisProcess

# coredis leaves anyio memory streams unclosed when a connection attempt
# fails; the garbage collector then warns. Not ours to fix (test_bus.py).
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

JWT_SECRET = "access-cluster-jwt-secret-0123456789abcdef"
REGISTRY = {"alice": "alice-cluster-token", "bob": "bob-cluster-token", "carol": "carol-token"}
RULES = (
    ChannelRule(
        "/private/{a}/{b}", subscribe=("{a}", "{b}"), publish=("{a}", "{b}"), sender="from"
    ),
    ChannelRule("/private/**", subscribe="nobody", publish="nobody"),
)


@pytest.fixture
def settings(tmp_path: Path) -> AccessSettings:
    (tmp_path / "jwt.secret").write_text(JWT_SECRET)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(REGISTRY))
    return AccessSettings(
        rules=RULES,
        tokens=TokenFileSettings(file=tokens),
        jwt=JwtSettings(secret_file=tmp_path / "jwt.secret", leeway=0),
    )


async def start_nodes(nursery: trio.Nursery, url: str, settings: AccessSettings) -> tuple[int, int]:
    """Two nodes on ``url`` under a fresh namespace, access control on both; their ports."""
    ns = namespace()
    ports = []
    for _ in range(2):
        config = make_config(engine=EngineConfig(timeout=10))
        server = BayeuxServer(config, bus=RedisBus(url, namespace=ns))
        install(server, settings)
        await nursery.start(server.serve)
        assert server.port is not None
        ports.append(server.port)
    return ports[0], ports[1]


async def handshake(port: int, ext: Any = None) -> str:
    message: dict[str, Any] = dict(HANDSHAKE)
    if ext is not None:
        message["ext"] = ext
    (reply,) = await bayeux(port, [message])
    assert reply["successful"] is True, reply
    client_id: str = reply["clientId"]
    return client_id


async def ask(port: int, client_id: str, message: dict[str, Any]) -> dict[str, Any]:
    """One message of ``client_id``'s to the node on ``port``; its reply."""
    (reply,) = await bayeux(port, [{**message, "clientId": client_id}])
    return reply


def subscribe(channel: str) -> dict[str, Any]:
    return {"channel": "/meta/subscribe", "subscription": channel}


CONNECT = {"channel": "/meta/connect", "connectionType": "long-polling"}


@fail_after(30)
async def test_connection_token_grants_and_expiry_travel_to_the_adopting_node(
    redis_server: RedisProcess, nursery: trio.Nursery, settings: AccessSettings
) -> None:
    a, b = await start_nodes(nursery, redis_server.url, settings)
    expires = time.time() + 4
    claims = {"sub": "alice", "channels": ["/room/*"], "exp": expires}
    token = pyjwt.encode(claims, JWT_SECRET, algorithm="HS256")
    client_id = await handshake(a, {"auth": {"token": token}})
    # everything else goes to B, which has never seen the token
    assert (await ask(b, client_id, subscribe("/room/a")))["successful"] is True
    for outside in ["/other", "/room/**", "/room/a/b"]:
        reply = await ask(b, client_id, subscribe(outside))
        assert reply["error"] == f"403:{outside}:Forbidden"
    reply = await ask(b, client_id, {"channel": "/other", "data": 1})
    assert reply["error"] == "403:/other:Forbidden"
    reply = await ask(b, client_id, {"channel": "/room/b", "data": 1})
    assert reply["successful"] is True
    (reply, *_) = await bayeux(b, [{**CONNECT, "clientId": client_id}])
    assert reply["successful"] is True
    # the held connect on B: answered when the token expires, by B
    replies = await bayeux(b, [{**CONNECT, "clientId": client_id}])
    ended = time.time()
    assert replies[0]["successful"] is True
    assert replies[0]["advice"]["reconnect"] == "handshake"
    assert expires <= ended < expires + 2.5, ended - expires
    for port in (b, a):
        reply = await ask(port, client_id, CONNECT)
        assert reply["error"] == f"401:{client_id}:Unknown client"
        assert reply["advice"]["reconnect"] == "handshake"
    gc.collect()


@fail_after(30)
async def test_a_registry_user_keeps_its_user_on_the_adopting_node(
    redis_server: RedisProcess, nursery: trio.Nursery, settings: AccessSettings
) -> None:
    a, b = await start_nodes(nursery, redis_server.url, settings)
    conversation = "/private/alice/bob"
    alice = await handshake(a, {"authToken": REGISTRY["alice"]})
    bob = await handshake(a, {"authToken": REGISTRY["bob"]})
    carol = await handshake(a, {"authToken": REGISTRY["carol"]})
    anonymous = await handshake(a)
    # on B, with no token on the messages: the users came with the sessions
    for member in (alice, bob):
        assert (await ask(b, member, subscribe(conversation)))["successful"] is True
    for outsider in (carol, anonymous):
        reply = await ask(b, outsider, subscribe(conversation))
        assert reply["error"] == f"403:{conversation}:Forbidden"
        reply = await ask(b, outsider, {"channel": conversation, "data": {"text": "x"}})
        assert reply["error"] == f"403:{conversation}:Forbidden"
    # alice publishes on B as bob; bob, back on A, is told it was alice
    reply = await ask(b, alice, {"channel": conversation, "data": {"from": "bob", "text": "hi"}})
    assert reply["successful"] is True
    got: list[dict[str, Any]] = []
    for _ in range(20):
        got += deliveries(await bayeux(a, [{**CONNECT, "clientId": bob}]))
        if got:
            break
    assert got == [{"channel": conversation, "data": {"from": "alice", "text": "hi"}}]
    gc.collect()
