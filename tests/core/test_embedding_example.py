"""docs/examples/asyncio_longpoll.py must really work: drive it over loopback.

The example is stdlib asyncio plus bayeux_core and its wire binding; these
tests run it with ``asyncio.run`` on 127.0.0.1, port 0, and talk raw HTTP/1.1
to it: long-polling, a JSON-P GET, form POSTs, CORS, EventSource streams and
the requests it refuses.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from bayeux_core import (
    Engine,
    EngineConfig,
    Event,
    Extension,
    Handshaken,
    Message,
    MessageContext,
    SessionExpired,
    wire,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "asyncio_longpoll.py"
HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["long-polling", "callback-polling", "eventsource"],
}


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("asyncio_longpoll", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpClient:
    """One keep-alive HTTP/1.1 connection to the example server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send_head(
        self, method: str, path: str, headers: dict[str, str], version: str = "1.1"
    ) -> None:
        lines = [f"{method} {path} HTTP/{version}", "Host: localhost"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def read_head(self) -> tuple[int, dict[str, str]]:
        status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n"))[:-4].decode().split("\r\n")
        headers = {n.lower(): v.strip() for n, _, v in (line.partition(":") for line in lines)}
        return int(status_line.split()[1]), headers

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = "application/json",
        **headers: str,
    ) -> Response:
        fields = {name.replace("_", "-"): value for name, value in headers.items()}
        if content_type is not None:
            fields["Content-Type"] = content_type
        if body or method == "POST":
            fields["Content-Length"] = str(len(body))
        self.send_head(method, path, fields)
        self.writer.write(body)
        await self.writer.drain()
        status, response_headers = await self.read_head()
        payload = await self.reader.readexactly(int(response_headers["content-length"]))
        return Response(status, response_headers, payload)

    async def bayeux(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        response = await self.request("POST", "/faye", orjson.dumps(list(messages)))
        assert response.status == 200, response
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        replies: list[dict[str, Any]] = orjson.loads(response.body)
        return replies

    async def handshake(self) -> str:
        (reply,) = await self.bayeux(HANDSHAKE)
        assert reply["successful"] is True
        client_id: str = reply["clientId"]
        return client_id

    def connect(self, client_id: str) -> dict[str, Any]:
        return {
            "channel": "/meta/connect",
            "clientId": client_id,
            "connectionType": "long-polling",
        }

    async def read_chunk(self) -> bytes:
        """One chunk of a chunked body (b"" for the last one)."""
        size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
        data = await self.reader.readexactly(size + 2)
        assert data.endswith(b"\r\n")
        return data[:-2]

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
        server = example.BayeuxServer(engine)
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


def test_jsonp_get_is_answered_with_a_script(example: ModuleType) -> None:
    async def body(server: Any, port: int) -> None:
        client = await HttpClient.open(port)
        message = quote(orjson.dumps([HANDSHAKE]).decode())
        response = await client.request(
            "GET", f"/faye?message={message}&jsonp=cb.done", content_type=None
        )
        assert response.status == 200
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["content-disposition"] == "attachment; filename=f.txt"
        assert response.body.startswith(b"/**/cb.done(")
        assert response.body.endswith(b");")
        (reply,) = orjson.loads(response.body[len(b"/**/cb.done(") : -len(b");")])
        assert reply["successful"] is True
        assert "websocket" not in reply["supportedConnectionTypes"]  # not offered

        # Without jsonp=, Faye's default callback name; a bad name is refused.
        response = await client.request("GET", f"/faye?message={message}", content_type=None)
        assert response.body.startswith(b"/**/jsonpcallback(")
        response = await client.request(
            "GET", f"/faye?message={message}&jsonp=alert(1)", content_type=None
        )
        assert response.status == 400
        await client.close()

    run_with_server(example, body)


class SeesRequests(Extension):
    """Keeps the ``context.request`` of each incoming message."""

    outgoing_deliveries = False

    def __init__(self) -> None:
        self.requests: list[object] = []

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        self.requests.append(context.request)
        return message


def test_form_posts_as_curl_sends_them(example: ModuleType) -> None:
    seen = SeesRequests()

    async def body(server: Any, port: int) -> None:
        client = await HttpClient.open(port)
        # curl -d 'message=[...]': form-encoded, the JSON not escaped at all
        form = b'message=[{"channel":"/meta/handshake","version":"1.0",'
        form += b'"supportedConnectionTypes":["long-polling"]}]'
        response = await client.request(
            "POST", "/faye", form, content_type="application/x-www-form-urlencoded"
        )
        assert response.status == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        (reply,) = orjson.loads(response.body)
        assert reply["successful"] is True
        client_id = reply["clientId"]

        # Escaped as a browser form would, with a text/plain type (CORS-safe).
        connect = orjson.dumps([client.connect(client_id)]).decode()
        response = await client.request(
            "POST", "/faye", f"message={quote(connect)}".encode(), content_type="text/plain"
        )
        (reply,) = orjson.loads(response.body)
        assert reply["channel"] == "/meta/connect"
        assert reply["successful"] is True

        # A form without a message field is not Bayeux.
        response = await client.request(
            "POST", "/faye", b"other=1", content_type="application/x-www-form-urlencoded"
        )
        assert response.status == 400
        await client.close()

    run_with_server(example, body, Engine(extensions=[seen]))
    request = seen.requests[0]
    assert isinstance(request, wire.HttpRequest)  # context.request is the binding's value
    assert request.method == b"POST"
    assert request.header(b"content-type") == b"application/x-www-form-urlencoded"


def test_cors_preflight_and_cors_post(example: ModuleType) -> None:
    origin = "http://app.example"

    async def body(server: Any, port: int) -> None:
        client = await HttpClient.open(port)
        response = await client.request(
            "OPTIONS",
            "/faye",
            content_type=None,
            Origin=origin,
            Access_Control_Request_Method="POST",
            Access_Control_Request_Headers="content-type",
        )
        assert response.status == 200
        assert response.body == b""
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
        assert response.headers["access-control-allow-methods"] == "POST, GET"
        assert "Content-Type" in response.headers["access-control-allow-headers"]

        response = await client.request(
            "POST", "/faye", orjson.dumps([HANDSHAKE]), content_type="text/plain", Origin=origin
        )
        assert response.status == 400  # text/plain is a form: no message field
        form = b"message=" + quote(orjson.dumps([HANDSHAKE]).decode()).encode()
        response = await client.request(
            "POST", "/faye", form, content_type="text/plain", Origin=origin
        )
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
        await client.close()

    run_with_server(example, body)


def test_eventsource_stream_receives_publishes(example: ModuleType) -> None:
    async def body(server: Any, port: int) -> None:
        alice = await HttpClient.open(port)
        client_id = await alice.handshake()
        (subscribed,) = await alice.bayeux(
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/chat/**"}
        )
        assert subscribed["successful"] is True

        stream = await HttpClient.open(port)
        stream.send_head(
            "GET", f"/faye/{client_id}", {"Accept": "text/event-stream", "Origin": "http://x"}
        )
        status, headers = await stream.read_head()
        assert status == 200
        assert headers["content-type"] == "text/event-stream"
        assert headers["transfer-encoding"] == "chunked"
        assert headers["access-control-allow-origin"] == "http://x"
        assert await stream.read_chunk() == b"retry: 5000\r\n\r\n"

        bob = await HttpClient.open(port)
        bob_id = await bob.handshake()
        await bob.bayeux({"channel": "/chat/a/b", "clientId": bob_id, "data": "hi"})
        assert await stream.read_chunk() == b'data: [{"channel":"/chat/a/b","data":"hi"}]\r\n\r\n'
        server.publish("/chat/news", {"n": 1})
        event = await stream.read_chunk()
        assert event == b'data: [{"channel":"/chat/news","data":{"n":1}}]\r\n\r\n'

        # The session ends: the engine closes the stream, and its body ends.
        await alice.bayeux({"channel": "/meta/disconnect", "clientId": client_id})
        assert await stream.read_chunk() == b""
        assert await stream.reader.read() == b""  # and the connection closes
        assert server._streams == {}
        await alice.close()
        await bob.close()
        await stream.close()

    run_with_server(example, body)


def test_eventsource_refusals_and_a_client_that_leaves(example: ModuleType) -> None:
    async def body(server: Any, port: int) -> None:
        client = await HttpClient.open(port)
        client_id = await client.handshake()
        response = await client.request(
            "GET", "/faye/nobody", content_type=None, Accept="text/event-stream"
        )
        assert response.status == 400  # no such client
        assert await client.reader.read() == b""
        assert server._streams == {}

        old = await HttpClient.open(port)  # events go out as chunks: HTTP/1.1 only
        old.send_head("GET", f"/faye/{client_id}", {"Accept": "text/event-stream"}, "1.0")
        assert (await old.read_head())[0] == 400

        stream = await HttpClient.open(port)
        stream.send_head("GET", f"/faye/{client_id}", {"Accept": "text/event-stream"})
        assert (await stream.read_head())[0] == 200
        assert len(server._streams) == 1
        await stream.close()  # the example notices and closes the engine's connection
        for _ in range(100):
            if not server._streams:
                break
            await asyncio.sleep(0.01)
        assert server._streams == {}
        await old.close()
        await client.close()

    run_with_server(example, body)


def test_bad_requests_get_http_errors(example: ModuleType) -> None:
    async def body(server: Any, port: int) -> None:
        client = await HttpClient.open(port)
        assert (await client.request("POST", "/faye", b"message=1")).status == 400
        assert (await client.request("POST", "/faye", b"1")).status == 400
        assert (await client.request("GET", "/faye", content_type=None)).status == 400
        assert (await client.request("PUT", "/faye", b"[]")).status == 400
        assert (await client.request("POST", "/elsewhere", b"[]")).status == 404
        # The example serves no client script.
        assert (await client.request("GET", "/faye/client.js", content_type=None)).status == 404
        assert await client.bayeux() == []  # an empty batch is answered with []

        response = await client.request(
            "GET",
            "/faye",
            content_type=None,
            Upgrade="websocket",
            Connection="Upgrade",
            Sec_WebSocket_Key="dGhlIHNhbXBsZSBub25jZQ==",
            Sec_WebSocket_Version="13",
        )
        assert response.status == 400
        assert response.body == b"WebSocket is not supported here"
        assert await client.reader.read() == b""
        await client.close()

        # A body over max_body is refused from its Content-Length, unread.
        client = await HttpClient.open(port)
        client.send_head("POST", "/faye", {"Content-Length": str(wire.WireConfig().max_body + 1)})
        status, headers = await client.read_head()
        assert status == 413
        assert headers["connection"] == "close"
        await client.close()

    run_with_server(example, body)


def test_stop_answers_held_connects(example: ModuleType) -> None:
    async def body(server: Any, port: int) -> None:
        client = await HttpClient.open(port)
        client_id = await client.handshake()
        await client.bayeux(client.connect(client_id))
        held = asyncio.create_task(client.bayeux(client.connect(client_id)))
        await asyncio.sleep(0.05)
        stream = await HttpClient.open(port)
        stream.send_head("GET", f"/faye/{client_id}", {"Accept": "text/event-stream"})
        assert (await stream.read_head())[0] == 200
        assert await stream.read_chunk() == b"retry: 5000\r\n\r\n"
        server.stop()
        (reply,) = await held
        assert reply["advice"]["reconnect"] == "retry"
        assert await stream.read_chunk() == b""  # streams end too
        await client.close()
        await stream.close()

    run_with_server(example, body)
