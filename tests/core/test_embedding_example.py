"""docs/examples/asyncio_longpoll.py must really work: drive it over loopback.

The example is stdlib asyncio plus bayeux_core; these tests run it with
``asyncio.run`` on 127.0.0.1, port 0, and talk raw HTTP/1.1 to it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from bayeux_core import Engine, EngineConfig, Event, Handshaken, SessionExpired

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "asyncio_longpoll.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("asyncio_longpoll", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class HttpClient:
    """One keep-alive HTTP/1.1 connection to the example server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {n.lower(): v.strip() for n, _, v in (line.partition(":") for line in lines)}
        payload = await self.reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), payload

    async def bayeux(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        status, payload = await self.request("POST", "/bayeux", orjson.dumps(list(messages)))
        assert status == 200, payload
        replies: list[dict[str, Any]] = orjson.loads(payload)
        return replies

    async def handshake(self) -> str:
        (reply,) = await self.bayeux(
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            }
        )
        assert reply["successful"] is True
        client_id: str = reply["clientId"]
        return client_id

    def connect(self, client_id: str) -> dict[str, Any]:
        return {
            "channel": "/meta/connect",
            "clientId": client_id,
            "connectionType": "long-polling",
        }

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def run_with_server(
    example: ModuleType,
    body: Callable[[Any, int], Awaitable[None]],
    engine: Engine | None = None,
) -> list[Event]:
    """Start the example server, run ``body(server, port)``, stop; the events seen."""
    events: list[Event] = []

    async def main() -> None:
        server = example.LongPollServer(engine)
        server.on_event = events.append
        listener = await server.start("127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            async with asyncio.timeout(10):
                await body(server, port)
        finally:
            server.stop()
            listener.close()
            await listener.wait_closed()

    asyncio.run(main())
    return events


def test_held_connect_receives_a_message_published_by_another_client(
    example: ModuleType,
) -> None:
    async def body(server: Any, port: int) -> None:
        alice = await HttpClient.open(port)
        client_id = await alice.handshake()
        first, subscribed = await alice.bayeux(
            alice.connect(client_id),
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/chat/*"},
        )
        assert first["successful"] is True  # the first connect is not held
        assert subscribed == {
            "clientId": client_id,
            "channel": "/meta/subscribe",
            "successful": True,
            "subscription": "/chat/*",
        }
        held = asyncio.create_task(alice.bayeux(alice.connect(client_id)))
        await asyncio.sleep(0.05)
        assert not held.done()  # the connect is held

        bob = await HttpClient.open(port)
        bob_id = await bob.handshake()
        (published,) = await bob.bayeux(
            {"channel": "/chat/lobby", "clientId": bob_id, "data": {"text": "hi"}, "id": "9"}
        )
        assert published == {
            "id": "9",
            "clientId": bob_id,
            "channel": "/chat/lobby",
            "successful": True,
        }
        connect_reply, delivery = await held
        assert connect_reply["channel"] == "/meta/connect"
        assert connect_reply["successful"] is True
        assert delivery == {"channel": "/chat/lobby", "data": {"text": "hi"}}

        # A server-side publish reaches the next held connect too.
        held = asyncio.create_task(alice.bayeux(alice.connect(client_id)))
        await asyncio.sleep(0.05)
        server.publish("/chat/news", [1, 2])
        _, delivery = await held
        assert delivery == {"channel": "/chat/news", "data": [1, 2]}
        await alice.close()
        await bob.close()

    events = run_with_server(example, body)
    assert sum(isinstance(event, Handshaken) for event in events) == 2


def test_timers_answer_held_connects_and_expire_sessions(example: ModuleType) -> None:
    engine = Engine(EngineConfig(timeout=0.2, session_timeout=0.2))

    async def body(server: Any, port: int) -> None:
        client = await HttpClient.open(port)
        client_id = await client.handshake()
        await client.bayeux(client.connect(client_id))
        loop = asyncio.get_running_loop()
        started = loop.time()
        (reply,) = await client.bayeux(client.connect(client_id))  # held for 0.2 s
        assert reply["successful"] is True
        assert loop.time() - started >= 0.15
        await asyncio.sleep(0.5)  # no connect for longer than the session timeout
        (reply,) = await client.bayeux(client.connect(client_id))
        assert reply["error"] == f"401:{client_id}:Unknown client"
        assert reply["advice"]["reconnect"] == "handshake"
        await client.close()

    events = run_with_server(example, body, engine)
    assert any(isinstance(event, SessionExpired) for event in events)


def test_bad_requests_get_http_errors(example: ModuleType) -> None:
    async def body(server: Any, port: int) -> None:
        client = await HttpClient.open(port)
        assert (await client.request("POST", "/bayeux", b"message=1"))[0] == 400
        assert (await client.request("POST", "/bayeux", b"1"))[0] == 400
        assert (await client.request("GET", "/bayeux"))[0] == 405
        assert (await client.request("POST", "/elsewhere", b"[]"))[0] == 404
        assert await client.bayeux() == []  # an empty batch is answered with []
        await client.close()

    run_with_server(example, body)


def test_stop_answers_held_connects(example: ModuleType) -> None:
    async def body(server: Any, port: int) -> None:
        client = await HttpClient.open(port)
        client_id = await client.handshake()
        await client.bayeux(client.connect(client_id))
        held = asyncio.create_task(client.bayeux(client.connect(client_id)))
        await asyncio.sleep(0.05)
        server.stop()
        (reply,) = await held
        assert reply["advice"]["reconnect"] == "retry"
        await client.close()

    run_with_server(example, body)
