"""The admin API's presence endpoint: GET <admin>/presence?channel=..."""

from __future__ import annotations

from typing import Any

import orjson
import trio

from bayeux_core import EngineConfig, Extension, Message, MessageContext
from bayeux_trio import BayeuxServer

from .helpers import HANDSHAKE, bayeux, fail_after, request, start_server
from .test_admin import AUTH, admin_config

PRESENCE = EngineConfig(timeout=30.0, presence=("/chat/**",))


class NameFromExt(Extension):
    """The handshake's ``ext.user`` names the session's user, ``ext.name`` its info."""

    outgoing_deliveries = False

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        if message.get("channel") == "/meta/handshake" and isinstance(ext, dict):
            context.user = ext.get("user")
            if "name" in ext:
                context.info = {"name": ext["name"]}
        return message


async def get(server: BayeuxServer, target: str, **kwargs: Any) -> tuple[int, Any]:
    assert server.port is not None
    kwargs.setdefault("headers", AUTH)
    answer = await request(server.port, "GET", target, **kwargs)
    assert answer.header("cache-control") == "no-store"
    return answer.status, orjson.loads(answer.body)


async def session(server: BayeuxServer, *channels: str, **ext: str) -> str:
    """A long-polling session (of user ``ext["user"]``, if given) subscribed to ``channels``."""
    assert server.port is not None
    (reply,) = await bayeux(server.port, [{**HANDSHAKE, "ext": ext}])
    client_id = str(reply["clientId"])
    replies = await bayeux(
        server.port,
        [
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": c}
            for c in channels
        ],
    )
    assert all(r["successful"] for r in replies), replies
    return client_id


@fail_after(15)
async def test_members_of_a_channel(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, admin_config(engine=PRESENCE), extensions=[NameFromExt()])
    assert await get(server, "/admin/presence?channel=/chat/room") == (
        200,
        {"channel": "/chat/room", "members": [], "count": 0},
    )
    await session(server, "/chat/room", user="alice", name="Alice")
    await session(server, "/chat/room", user="alice")  # a second tab: one member
    bob = await session(server, "/chat/room", "/chat/other", user="bob")
    watcher = await session(server, "/chat/*")  # a wildcard listener is no member
    status, answer = await get(server, "/admin/presence?channel=/chat/room")
    assert status == 200
    assert answer == {
        "channel": "/chat/room",
        "members": [
            {"user": "alice", "info": {"name": "Alice"}},
            {"user": "bob", "info": None},
        ],
        "count": 2,
    }
    assert answer["members"] == server.presence("/chat/room")
    # Percent-encoded, as curl --data-urlencode -G sends it.
    status, other = await get(server, "/admin/presence?channel=%2Fchat%2Fother")
    assert (status, other["members"], other["count"]) == (200, [{"user": "bob", "info": None}], 1)
    assert server.disconnect(bob)
    status, answer = await get(server, "/admin/presence?channel=/chat/room")
    assert (status, [m["user"] for m in answer["members"]], answer["count"]) == (200, ["alice"], 1)
    assert watcher not in str(answer)


@fail_after(15)
async def test_refusals(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, admin_config(engine=PRESENCE))
    for target in [
        "/admin/presence",
        "/admin/presence?channel=",
        "/admin/presence?room=/chat/room",
        "/admin/presence?channel=/chat/a&channel=/chat/b",
    ]:
        status, answer = await get(server, target)
        assert status == 400, target
        assert answer == {"error": "expected one channel parameter: ?channel=/chat/room"}
    for bad in ["chat", "/chat/*", "/chat/**", "/chat//room"]:
        status, answer = await get(server, f"/admin/presence?channel={bad}")
        assert (status, answer) == (400, {"error": f"not a channel name: {bad!r}"}), bad
    for without in ["/news", "/presence/chat/room", "/meta/connect", "/service/x"]:
        status, answer = await get(server, f"/admin/presence?channel={without}")
        assert (status, answer) == (404, {"error": f"no presence on {without}"}), without
    # The channel is a parameter, not a path.
    assert (await get(server, "/admin/presence/"))[0] == 400
    assert (await get(server, "/admin/presence/chat/room"))[0] == 404
    assert server.port is not None
    wrong = await request(server.port, "POST", "/admin/presence?channel=/chat/room", headers=AUTH)
    assert (wrong.status, wrong.header("allow")) == (405, "GET")
    # The same bearer token as every admin call.
    assert (await get(server, "/admin/presence?channel=/chat/room", headers=[]))[0] == 401
    wrong_token = [("authorization", "Bearer not-the-token-at-all")]
    assert (await get(server, "/admin/presence?channel=/chat/room", headers=wrong_token))[0] == 403


@fail_after(10)
async def test_presence_off(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, admin_config())
    status, answer = await get(server, "/admin/presence?channel=/chat/room")
    assert (status, answer) == (404, {"error": "presence is off (bayeux serve --presence PATTERN)"})
