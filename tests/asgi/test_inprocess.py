"""The ASGI application called in-process (httpx's ASGI transport), on asyncio and trio.

No server here: what these check is the application's own logic, the mount
shapes of Starlette's versions, and the timer started by the first request
on either event loop.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from bayeux_asgi import BayeuxASGI, WireConfig
from bayeux_asgi._app import full_path, http_request
from bayeux_core import EngineConfig

BACKENDS = ["asyncio", "trio"]
HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["long-polling"],
}


def test_full_path_in_both_mount_shapes() -> None:
    # Starlette >= 0.33: the whole path, the prefix in root_path.
    assert full_path({"path": "/faye/client.js", "root_path": "/faye"}) == "/faye/client.js"
    assert full_path({"path": "/faye", "root_path": "/faye"}) == "/faye"
    # Older Starlette: the prefix stripped from path.
    assert full_path({"path": "/client.js", "root_path": "/faye"}) == "/faye/client.js"
    assert full_path({"path": "/abc", "root_path": "/faye"}) == "/faye/abc"
    # Not mounted.
    assert full_path({"path": "/faye", "root_path": ""}) == "/faye"
    request = http_request(
        {
            "type": "http",
            "method": "GET",
            "path": "/faye",
            "query_string": b"message=%5B%5D&jsonp=cb",
            "headers": [(b"Accept", b"*/*")],
            "http_version": "2",
        }
    )
    assert request.target == b"/faye?message=%5B%5D&jsonp=cb"
    assert request.header(b"accept") == b"*/*"
    assert request.http_version == b"2"


async def _call(app: Any, scope: dict[str, Any]) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_old_starlette_mount_shape_serves_the_script(backend: str) -> None:
    app = BayeuxASGI()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/client.js",
        "root_path": "/faye",
        "query_string": b"",
        "headers": [],
    }
    status, body = anyio.run(_call, app, scope, backend=backend)
    assert status == 200
    assert b"Faye" in body


@pytest.mark.parametrize("backend", BACKENDS)
def test_timer_starts_with_the_first_request(backend: str) -> None:
    """No lifespan: the held connect is still answered when its hold ends."""
    app = BayeuxASGI(EngineConfig(timeout=0.2), wire=WireConfig(mount="/bayeux"))

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            (reply,) = (await client.post("/bayeux", json=[HANDSHAKE])).json()
            connect = {
                "channel": "/meta/connect",
                "clientId": reply["clientId"],
                "connectionType": "long-polling",
            }
            await client.post("/bayeux", json=[connect])  # answered at once
            with anyio.fail_after(10):
                response = await client.post("/bayeux", json=[connect])  # held, then released
            replies: list[Any] = response.json()
            assert (await client.get("/faye")).status_code == 404, "not our mount"
            return replies

    replies = anyio.run(main, backend=backend)
    assert [r["channel"] for r in replies] == ["/meta/connect"]
    assert replies[0]["successful"] is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_lifespan_and_server_publish(backend: str) -> None:
    app = BayeuxASGI(EngineConfig(timeout=5))
    events: list[str] = []
    app.add_listener(lambda event: events.append(type(event).__name__))

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.lifespan(),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            (reply,) = (await client.post("/faye", json=[HANDSHAKE])).json()
            client_id = reply["clientId"]
            subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/s"}
            connect = {
                "channel": "/meta/connect",
                "clientId": client_id,
                "connectionType": "long-polling",
            }
            await client.post("/faye", json=[subscribe, connect])
            result: list[Any] = []
            async with anyio.create_task_group() as group:

                async def held() -> None:
                    response = await client.post("/faye", json=[connect])
                    result.extend(response.json())

                group.start_soon(held)
                await anyio.sleep(0.1)  # not a timing assertion: let the connect arrive
                app.publish("/s", {"from": "server"})
            return result

    replies = anyio.run(main, backend=backend)
    assert {"channel": "/s", "data": {"from": "server"}} in [
        {k: r[k] for k in ("channel", "data") if k in r} for r in replies
    ]
    assert "Handshaken" in events
    assert "Published" in events
    assert json.dumps(replies)


@pytest.mark.parametrize("backend", BACKENDS)
def test_presence_under_asgi(backend: str) -> None:
    """The engine's presence, unchanged behind the adapter: the members list
    follows the watch's reply in the same response, and presence() agrees."""
    app = BayeuxASGI(EngineConfig(timeout=5, presence=("/chat/**",)))

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ids = []
            for _ in range(2):
                (reply,) = (await client.post("/faye", json=[HANDSHAKE])).json()
                ids.append(reply["clientId"])
            member, watcher = ids
            subscribe = {"channel": "/meta/subscribe", "clientId": member}
            await client.post("/faye", json=[subscribe | {"subscription": "/chat/room"}])
            watch = {"channel": "/meta/subscribe", "clientId": watcher}
            response = await client.post(
                "/faye", json=[watch | {"subscription": "/presence/chat/room"}]
            )
            replies: list[Any] = response.json()
            return [ids, replies]

    (member, _), replies = anyio.run(main, backend=backend)
    assert replies[0]["successful"] is True
    assert replies[1] == {
        "channel": "/presence/chat/room",
        "data": {"members": [{"user": member, "info": None}]},
    }
    assert app.presence("/chat/room") == [{"user": member, "info": None}]
