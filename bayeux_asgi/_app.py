"""The ASGI 3 application: ASGI scopes in, the wire binding and the driver inside.

Why it is thin: which request is what, how messages are decoded and how each
answer is shaped is :mod:`bayeux_core.wire`'s, shared with every network
layer; what the engine does with them is :mod:`bayeux_core`'s; and the one
object that calls the engine is :class:`~bayeux_asgi._driver.Driver`. What is
left here is ASGI: turning a scope into a :class:`~bayeux_core.wire.HttpRequest`,
reading a body within the limit, waiting (for a reply, a frame, or the peer
leaving), and sending ``http.response.*`` and ``websocket.*`` messages.

Everything awaits on anyio, so the application runs under any ASGI server on
asyncio or trio (uvicorn, hypercorn and its trio worker, daphne, granian...).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio

from bayeux_core import Engine, EngineConfig, Extension
from bayeux_core.wire import (
    BAD_MESSAGE,
    BAD_REQUEST,
    EVENT_PING,
    NOT_FOUND,
    TOO_LARGE,
    Answer,
    BayeuxRequest,
    ClientScript,
    EventStream,
    HttpRequest,
    HttpResponse,
    WebSocketUpgrade,
    WireConfig,
    classify,
    decode_request,
    reply_response,
    stream_head,
    websocket_messages,
)

from ._driver import Driver, Listener, StreamKind

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

__all__ = ["BayeuxASGI", "Receive", "Scope", "Send"]

log = logging.getLogger("bayeux.asgi")

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]

#: seconds between EventSource comments that keep the stream open through proxies
EVENTSOURCE_PING = 10.0
_SCRIPT_TYPE = b"text/javascript; charset=utf-8"
#: characters left as they are when a decoded ASGI path is quoted back
_PATH_SAFE = "/:@!$&'()*+,;=~"


class _Disconnected(Exception):
    """The HTTP client went away while its body was being read."""


class BayeuxASGI:
    """An ASGI 3 application serving Bayeux at ``wire.mount``.

    Args:
        engine_config: the engine's settings (timeouts, limits, history).
        wire: the HTTP binding's settings. ``wire.mount`` is the path clients
            use (``/faye``): mounted in Starlette at ``/faye``, the two agree.
        extensions: server extensions, run by the engine in this order.

    Transports: long-polling (JSON or form POST), callback-polling (JSON-P
    GET), CORS and its preflight, EventSource at ``<mount>/<clientId>``,
    WebSocket (the ASGI ``websocket`` scope), and the browser client at
    ``<mount>/client.js``.

    Its timer runs in the ASGI lifespan when the server sends lifespan
    events to it, or under a parent application's lifespan through
    :meth:`lifespan`, and otherwise starts with the first request.
    """

    def __init__(
        self,
        engine_config: EngineConfig | None = None,
        *,
        wire: WireConfig | None = None,
        extensions: Iterable[Extension] = (),
    ) -> None:
        self.wire = wire if wire is not None else WireConfig()
        self.engine = Engine(engine_config, extensions=list(extensions))
        self.driver = Driver(self.engine)
        self._script: tuple[bytes, bytes] | None = None

    # ---------------------------------------------------------- application

    def publish(self, channel: str, data: Any, ext: Any = None) -> None:
        """Publish from the server to ``channel`` (call it on the server's loop)."""
        self.driver.publish(channel, data, ext)

    def presence(self, channel: str) -> list[dict[str, Any]]:
        """Who is in ``channel`` now (``EngineConfig.presence``; docs/presence.md).

        Raises :class:`bayeux_core.LocalProtocolError` if it has no presence.
        """
        return self.engine.presence(channel)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with each engine event (handshakes, publishes...)."""
        self.driver.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.driver.remove_listener(listener)

    def routes(self) -> list[BaseRoute]:
        """Starlette (and FastAPI) routes for everything under ``wire.mount``.

        ``Mount("/faye", app)`` alone does not match ``/faye`` itself, the
        path Faye's clients POST to and open WebSockets on: a catch-all route
        after it would get those, or the router would redirect to ``/faye/``.
        These are the mount plus an HTTP and a WebSocket route for the exact
        path: ``Starlette(routes=[*bayeux.routes(), ...])``.
        """
        from starlette.routing import Mount, Route, WebSocketRoute

        mount = self.wire.mount
        return [Route(mount, self), WebSocketRoute(mount, self), Mount(mount, self)]

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Run the timer for the life of a parent application.

        ``Starlette(routes=[Mount("/faye", bayeux)], lifespan=bayeux.lifespan)``:
        Starlette does not pass lifespan events to mounted applications. On
        the way out, held connects are answered and streams closed, so that
        clients come back to the next server.
        """
        self.driver.claim()
        async with anyio.create_task_group() as group:
            group.start_soon(self.driver.run_timer)
            try:
                yield
            finally:
                self.driver.shutdown()
                group.cancel_scope.cancel()

    # ----------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if not self.driver.running:
            self.driver.start_detached()
        else:
            self.driver.claim()
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            raise RuntimeError(f"unsupported ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            context = self.lifespan()
            await context.__aenter__()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        try:
            while (await receive())["type"] != "lifespan.shutdown":
                pass
        finally:
            await context.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})

    # ----------------------------------------------------------------- HTTP

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = http_request(scope)
        route = classify(request, self.wire)
        if isinstance(route, BayeuxRequest):
            await self._bayeux(route, request, receive, send)
        elif isinstance(route, Answer):
            await respond(send, route.response)
        elif isinstance(route, EventStream):
            await self._eventsource(route, receive, send)
        elif isinstance(route, ClientScript):
            await self._client_script(route, request, send)
        elif isinstance(route, WebSocketUpgrade):
            # The server did not hand this upgrade over as a websocket scope.
            await respond(send, BAD_REQUEST)
        else:
            await respond(send, NOT_FOUND)

    async def _bayeux(
        self, route: BayeuxRequest, request: HttpRequest, receive: Receive, send: Send
    ) -> None:
        try:
            body = await read_body(request, receive, self.wire.max_body)
        except _Disconnected:
            return
        if body is None:
            await respond(send, TOO_LARGE)
            return
        messages = decode_request(route, body, self.wire)
        if isinstance(messages, HttpResponse):
            await respond(send, messages)
            return
        driver = self.driver
        conn, pending = driver.new_request()
        try:
            driver.receive(conn, messages, request)
            if not pending.done.is_set():
                # Held: wait for the reply, or for the client to leave.
                async with anyio.create_task_group() as group:
                    group.start_soon(_watch_disconnect, receive, group.cancel_scope)
                    await pending.done.wait()
                    group.cancel_scope.cancel()
        finally:
            if pending.reply is None:
                driver.forget(conn)  # gone: its messages wait for the next connect
        reply = pending.reply
        if reply is None:
            return
        try:
            await respond(send, reply_response(route.shape, reply.body))
        except Exception as exc:
            log.debug("a reply could not be sent: %r", exc)
            driver.reply_failed(reply)

    async def _eventsource(self, route: EventStream, receive: Receive, send: Send) -> None:
        driver = self.driver
        conn, stream = driver.new_stream(StreamKind.EVENTSOURCE)
        try:
            if not driver.open_stream(conn, route.client_id):
                await respond(send, BAD_REQUEST)
                return
            head = stream_head(route)
            await send(
                {"type": "http.response.start", "status": head.status, "headers": head.headers}
            )
            await send({"type": "http.response.body", "body": head.body, "more_body": True})
            async with anyio.create_task_group() as group:
                group.start_soon(_watch_disconnect, receive, group.cancel_scope)
                group.start_soon(_ping, stream.push)
                async with stream.frames:
                    async for frame in stream.frames:
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                # Closed by the engine (the session ended) or by shutdown.
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()
        except OSError as exc:
            log.debug("an EventSource stream broke: %r", exc)
        finally:
            driver.forget(conn)

    async def _client_script(self, route: ClientScript, request: HttpRequest, send: Send) -> None:
        script = self._client_js() if route.name == "client.js" else None
        if script is None or request.method not in (b"GET", b"HEAD"):
            await respond(send, NOT_FOUND)
            return
        body, etag = script
        headers = ((b"etag", etag), (b"cache-control", b"no-cache"))
        match = request.header(b"if-none-match")
        if match is not None and (etag in match or match.strip() == b"*"):
            await respond(send, HttpResponse(304, headers))
            return
        response = HttpResponse(200, ((b"content-type", _SCRIPT_TYPE), *headers), body)
        await respond(send, response, head=request.method == b"HEAD")

    def _client_js(self) -> tuple[bytes, bytes] | None:
        if self._script is None:
            path = client_script_path()
            if path is None:
                return None
            body = path.read_bytes()
            self._script = body, b'"' + hashlib.sha1(body).hexdigest().encode() + b'"'
        return self._script

    # ------------------------------------------------------------ WebSocket

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = http_request(scope)
        route = classify(request, self.wire)
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if not isinstance(route, WebSocketUpgrade):
            # Outside the mount, or a refused origin: the server answers 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        driver = self.driver
        conn, stream = driver.new_stream(StreamKind.WEBSOCKET)
        limit = self.wire.max_ws_message
        try:
            driver.open_stream(conn)
            async with anyio.create_task_group() as group:

                async def write() -> None:
                    try:
                        async with stream.frames:
                            async for frame in stream.frames:
                                await send({"type": "websocket.send", "text": frame})
                        await send({"type": "websocket.close", "code": stream.close_code})
                    except Exception as exc:  # the peer is gone
                        log.debug("a WebSocket write failed: %r", exc)
                    group.cancel_scope.cancel()

                group.start_soon(write)
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        group.cancel_scope.cancel()
                        break
                    text = message.get("text")
                    if text is None:
                        stream.finish(1003)  # text frames only, as Faye
                        break
                    if _too_long(text, limit):
                        stream.finish(1009)
                        break
                    messages = websocket_messages(text, self.wire)
                    if isinstance(messages, bytes):
                        stream.push(BAD_MESSAGE.decode())
                        continue
                    # None, as the trio server: extensions see no request on
                    # WebSocket messages (tests/interop's TransportProbe relies on it).
                    driver.receive(conn, messages, None)
        finally:
            driver.forget(conn)


# ---------------------------------------------------------------- helpers


def full_path(scope: Scope) -> str:
    """The request's path from the server's root, mounted or not.

    Starlette >= 0.33 keeps the whole path in ``path`` and the mount prefix
    in ``root_path``; older versions (and some routers) strip the prefix from
    ``path``. Either way the wire sees the path the client used.
    """
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and not (path == root or path.startswith((root + "/", root + "."))):
        path = root + path
    return path


def http_request(scope: Scope) -> HttpRequest:
    """The :class:`~bayeux_core.wire.HttpRequest` of an ``http`` or ``websocket`` scope."""
    target = quote(full_path(scope), safe=_PATH_SAFE).encode("ascii")
    query: bytes = scope.get("query_string") or b""
    if query:
        target += b"?" + query
    return HttpRequest(
        method=str(scope.get("method", "GET")).encode("ascii"),
        target=target,
        headers=tuple((bytes(name).lower(), bytes(value)) for name, value in scope["headers"]),
        http_version=str(scope.get("http_version", "1.1")).encode("ascii"),
    )


async def read_body(request: HttpRequest, receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when it is over ``limit`` bytes (read no further)."""
    length = request.header(b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(send: Send, response: HttpResponse, *, head: bool = False) -> None:
    """Send a whole :class:`~bayeux_core.wire.HttpResponse` with its length."""
    headers = [*response.headers, (b"content-length", b"%d" % len(response.body))]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` when the client goes away (anything else is ignored)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _ping(push: Callable[[bytes], bool]) -> None:
    while True:
        await anyio.sleep(EVENTSOURCE_PING)
        push(EVENT_PING)


def _too_long(text: str, limit: int) -> bool:
    """True if ``text`` is over ``limit`` bytes in UTF-8 (encoding only when it may be)."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def client_script_path() -> Path | None:
    """``bayeux_trio/static/client.js``, found without importing bayeux_trio."""
    spec = importlib.util.find_spec("bayeux_trio")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    locations.append(str(Path(__file__).resolve().parents[1] / "bayeux_trio"))
    for location in locations:
        path = Path(location) / "static" / "client.js"
        if path.is_file():
            return path
    return None
