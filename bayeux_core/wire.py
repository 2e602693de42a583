"""Faye's HTTP and WebSocket wire rules, as pure functions: the binding.

The engine speaks Bayeux messages; Faye's clients speak HTTP and WebSocket
around them. Everything between lives here once, for every network layer:
which requests under the mount are Bayeux, how a body, a form or a query
carries the messages, JSON-P callbacks, CORS and its preflight, EventSource
streams at ``<mount>/<clientId>``, the WebSocket handshake, and the bytes each
answer goes out as. No sockets, no framework types: a request comes in as an
:class:`HttpRequest` of plain bytes, and answers go out as
:class:`HttpResponse` values or bytes to frame.

How a network layer uses it::

    route = classify(request, config)          # from the head alone
    if isinstance(route, BayeuxRequest):
        body = ... read up to config.max_body bytes ...
        messages = decode_request(route, body, config)
        if isinstance(messages, HttpResponse):
            ... write it: the request was not Bayeux ...
        engine.receive(conn, messages, now=now, request=request)
        ... later, for the engine's Reply on conn:
        write(reply_response(route.shape, reply.body))
    elif isinstance(route, EventStream): ... stream_head(route), then
        event_bytes(body) per Reply or Deliver ...
    elif isinstance(route, WebSocketUpgrade): ... websocket_accept(request),
        then websocket_messages(text, config) per text message ...

Requests outside the mount come back as :class:`NotMounted`: the network
layer's own pages (static files, health, metrics) are its business.
"""

from __future__ import annotations

import base64
import hashlib
import re
from binascii import a2b_qp
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from ._messages import BodyError, Message, decode_body

__all__ = [
    "BAD_MESSAGE",
    "BAD_REQUEST",
    "EVENT_PING",
    "FORBIDDEN_ORIGIN",
    "NOT_FOUND",
    "TOO_LARGE",
    "Answer",
    "BayeuxRequest",
    "ClientScript",
    "EventStream",
    "HttpRequest",
    "HttpResponse",
    "NotMounted",
    "ReplyShape",
    "Route",
    "WebSocketUpgrade",
    "WireConfig",
    "body_error",
    "classify",
    "cors_headers",
    "decode_form",
    "decode_request",
    "escape_js",
    "event_bytes",
    "jsonp_wrap",
    "preflight",
    "reply_response",
    "stream_head",
    "under_mount",
    "valid_callback",
    "websocket_accept",
    "websocket_messages",
]

Headers = Sequence[tuple[bytes, bytes]]

#: Faye's callback rule (faye.md 3.4): dotted JavaScript identifiers, minus
#: the names that open a Flash cross-domain hole (CWS, FWS, ZWS). ASCII only:
#: Python's re would let the dotless i and the Kelvin sign match [a-z].
_CALLBACK = re.compile(
    r"(?-i:(?![CFZ]WS))[a-z_$][a-z0-9_$]*(?:\.[a-z_$][a-z0-9_$]*)*", re.IGNORECASE | re.ASCII
)
_DEFAULT_CALLBACK = "jsonpcallback"
_PREFLIGHT_HEADERS = (
    (b"access-control-allow-credentials", b"true"),
    (
        b"access-control-allow-headers",
        b"Accept, Authorization, Content-Type, Pragma, X-Requested-With",
    ),
    (b"access-control-allow-methods", b"POST, GET"),
    (b"access-control-max-age", b"86400"),
)
_NO_CACHE = (
    (b"cache-control", b"no-cache, no-store"),
    (b"x-content-type-options", b"nosniff"),
)
_JSON = ((b"content-type", b"application/json; charset=utf-8"),)
_JSONP = (
    (b"content-type", b"text/javascript; charset=utf-8"),
    # Saved to disk rather than shown, should a browser open it directly.
    (b"content-disposition", b"attachment; filename=f.txt"),
)
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_FORM_NAMES = (b"message", b"jsonp")
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: what a WebSocket message that is not Bayeux gets (Faye answers so too)
BAD_MESSAGE = b'[{"successful":false,"error":"400::Bad request"}]'


class HttpRequest(NamedTuple):
    """A request head as plain values, whatever parsed it.

    ``headers`` have lower-case names (as h11 and ASGI give them), in the
    order they came. This is also what extensions see as ``context.request``.
    A named tuple: made for every request, so it must be cheap to make.
    """

    method: bytes
    target: bytes
    headers: Headers = ()
    http_version: bytes = b"1.1"

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), or None.

        The first, as Node.js (and so Faye) keeps the first of a repeated
        Content-Type; a repeated Origin is checked value by value.
        """
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A whole answer: status, headers (no framing headers) and body.

    The network layer adds ``content-length`` (or its own framing) and
    ``connection`` as its HTTP machinery requires.
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""


def _plain(status: int, text: bytes) -> HttpResponse:
    return HttpResponse(status, (_TEXT,), text)


BAD_REQUEST = _plain(400, b"Bad request")
FORBIDDEN_ORIGIN = _plain(403, b"Forbidden origin")
NOT_FOUND = _plain(404, b"Not found")
#: a body over ``max_body`` (what :func:`body_error` says for one)
TOO_LARGE = _plain(413, b"Too large")


@dataclass(frozen=True, slots=True)
class WireConfig:
    """What the binding needs to know of the server.

    Attributes:
        mount: the Bayeux endpoint path (``/faye``).
        allowed_origins: if set, requests whose ``Origin`` is not listed are
            refused with 403 (CORS, JSON-P, WebSocket, EventSource). None: any
            origin, as Faye.
        max_body: largest request body or query message, in bytes.
        max_json_depth: deepest nesting of arrays and objects in one.
        max_ws_message: largest WebSocket message, in bytes.
    """

    mount: str = "/faye"
    allowed_origins: frozenset[str] | None = None
    max_body: int = 1024 * 1024
    max_json_depth: int = 64
    max_ws_message: int = 1024 * 1024
    _script: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.mount.startswith("/") or (len(self.mount) > 1 and self.mount.endswith("/")):
            raise ValueError(f"mount must start with / and not end with one: {self.mount!r}")
        # /faye.js is an alias of /faye/client.js, as in Faye.
        object.__setattr__(self, "_script", self.mount.rsplit("/", 1)[-1] + ".js")


@dataclass(slots=True)
class ReplyShape:
    """How the answer to a Bayeux request is shaped.

    ``callback``: the JSON-P function to wrap the reply in (None: plain JSON).
    ``origin``: the request's ``Origin``, echoed for CORS (None: no CORS
    headers).
    """

    callback: str | None = None
    origin: bytes | None = None


class Route:
    """What a request is: one of the subclasses below.

    Routes and :class:`ReplyShape` are made for every request: plain slotted
    dataclasses, as a frozen one costs about half a microsecond a field to
    make. Treat them as values all the same.
    """

    __slots__ = ()


@dataclass(slots=True)
class NotMounted(Route):
    """Outside the mount: the network layer's own (static files, health)."""

    path: str


@dataclass(slots=True)
class ClientScript(Route):
    """The browser client script or its source map, by file name."""

    name: str


@dataclass(slots=True)
class Answer(Route):
    """Answer at once with ``response`` (a preflight, or a refusal)."""

    response: HttpResponse


@dataclass(slots=True)
class EventStream(Route):
    """An EventSource stream for ``client_id``: see :func:`stream_head`."""

    client_id: str
    origin: bytes | None = None


@dataclass(slots=True)
class WebSocketUpgrade(Route):
    """A WebSocket upgrade: see :func:`websocket_accept`."""


@dataclass(slots=True)
class BayeuxRequest(Route):
    """Bayeux messages, in the body or in ``query_message``.

    ``form``: the body is a form (or anything but JSON) whose ``message``
    field holds the JSON; ``query_message``: the query's ``message``, used for
    a GET and for a form body that has none.
    """

    shape: ReplyShape
    form: bool = False
    query_message: str | None = None


def valid_callback(name: str) -> bool:
    """True if ``name`` may be a JSON-P callback (Faye's rule)."""
    return _CALLBACK.fullmatch(name) is not None


def under_mount(path: str, mount: str) -> bool:
    """True if ``path`` is the mount or below it (``/faye``, ``/faye/x``, ``/faye.js``)."""
    return path == mount or path.startswith((mount.rstrip("/") + "/", mount + "."))


def classify(request: HttpRequest, config: WireConfig) -> Route:
    """What ``request`` is, from its head alone."""
    parts = urlsplit(request.target.decode("latin-1"))
    path = parts.path
    mount = config.mount
    if not under_mount(path, mount):
        return NotMounted(path)
    if path.endswith((".js", ".map")):
        name = path.rsplit("/", 1)[-1]
        return ClientScript("client.js" if name == config._script else name)
    # One pass over the headers, the first value of each name kept (as
    # header() does): each look-up below is then a dict's.
    fields: dict[bytes, bytes] = {}
    for key, value in request.headers:
        if key not in fields:
            fields[key] = value
    origin = fields.get(b"origin")
    allowed = config.allowed_origins
    if allowed is not None and origin is not None:
        # Every Origin must be allowed: a repeated one cannot slip past.
        for key, value in request.headers:
            if key == b"origin" and value.decode("latin-1") not in allowed:
                return Answer(FORBIDDEN_ORIGIN)
    method = request.method
    if method == b"OPTIONS" or b"access-control-request-method" in fields:
        return Answer(preflight(request))
    if method == b"GET" and b"text/event-stream" in fields.get(b"accept", b""):
        return EventStream(path.rsplit("/", 1)[-1], origin)
    if b"websocket" in fields.get(b"upgrade", b"").lower():
        return WebSocketUpgrade()
    if method == b"GET":
        query = parse_qs(parts.query, keep_blank_values=True)
        message = _first(query, "message")
        callback = _first(query, "jsonp") or _DEFAULT_CALLBACK
        if message is None or not valid_callback(callback):
            return Answer(BAD_REQUEST)
        return BayeuxRequest(ReplyShape(callback, origin), query_message=message)
    if method == b"POST":
        content_type = fields.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"application/json":
            return BayeuxRequest(ReplyShape(None, origin))
        # Browsers' CORS requests send text/plain, old IE nothing: any other
        # type is a form whose "message" field is the JSON.
        query_message = None
        if parts.query:
            query_message = _first(parse_qs(parts.query, keep_blank_values=True), "message")
        return BayeuxRequest(ReplyShape(None, origin), form=True, query_message=query_message)
    return Answer(BAD_REQUEST)


def decode_request(
    route: BayeuxRequest, body: bytes, config: WireConfig
) -> list[Message] | HttpResponse:
    """The messages a Bayeux request carries, or the HTTP error to answer."""
    payload: bytes | str | None
    if route.form and body.startswith(b"message=") and body.find(b"&") < 0 and body.isascii():
        # The usual form, one message field: what decode_form gives for it,
        # as bytes when they are ASCII (orjson then reads them as they are).
        # (find, not `in`: a bytes `in` first tries its operand as an int.)
        value = body[8:]
        if value.find(b"+") >= 0:
            value = value.replace(b"+", b" ")
        raw = _unquote(value)
        payload = (raw if raw.isascii() else raw.decode("utf-8", "replace")) or route.query_message
    elif route.form:
        message, callback = decode_form(body)
        payload = message or route.query_message  # an empty field counts as none
        if callback is not None and not valid_callback(callback):
            payload = None
    elif route.query_message is not None:
        payload = route.query_message
    else:
        payload = body
    if payload is None:
        return BAD_REQUEST
    messages = decode_body(payload, max_bytes=config.max_body, max_depth=config.max_json_depth)
    if isinstance(messages, BodyError):
        return body_error(messages)
    return messages


def body_error(error: BodyError) -> HttpResponse:
    """The HTTP answer to a body that is not Bayeux (400, or 413 when too large)."""
    return BAD_REQUEST if error.http_status == 400 else TOO_LARGE


def reply_response(shape: ReplyShape, body: bytes) -> HttpResponse:
    """The HTTP answer carrying an engine :class:`Reply`'s ``body``."""
    headers: list[tuple[bytes, bytes]] = list(_NO_CACHE)
    if shape.callback is not None:
        headers.extend(_JSONP)
        body = jsonp_wrap(shape.callback, body)
    else:
        headers.extend(_JSON)
    headers.extend(cors_headers(shape.origin))
    return HttpResponse(200, tuple(headers), body)


def jsonp_wrap(callback: str, body: bytes) -> bytes:
    """A reply body as the JSON-P script that calls ``callback`` with it.

    The leading comment keeps a callback name from being read as the start
    of a Flash file (Rosetta Flash; faye.md 3.4).
    """
    return b"/**/" + callback.encode() + b"(" + escape_js(body) + b");"


def cors_headers(origin: bytes | None) -> tuple[tuple[bytes, bytes], ...]:
    """The CORS pair for a request from ``origin`` (none without an Origin)."""
    if origin is None:
        return ()
    return (
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-credentials", b"true"),
    )


def preflight(request: HttpRequest) -> HttpResponse:
    """The answer to a CORS preflight, allowing what Faye's clients send."""
    origin = request.header(b"origin") or request.header(b"referer") or b"*"
    return HttpResponse(200, ((b"access-control-allow-origin", origin), *_PREFLIGHT_HEADERS))


def stream_head(route: EventStream) -> HttpResponse:
    """The head of an EventSource stream (its body follows as events).

    The first event sets the browser's retry delay; send it with the head.
    """
    headers = (
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache, no-store"),
        *cors_headers(route.origin),
    )
    return HttpResponse(200, headers, b"retry: 5000\r\n\r\n")


def event_bytes(payload: bytes) -> bytes:
    """One EventSource event carrying a JSON array (a Reply body, or
    ``[`` + a Deliver payload + ``]``)."""
    return b"data: " + payload + b"\r\n\r\n"


#: an EventSource comment, to keep the stream open through proxies
EVENT_PING = b":\r\n\r\n"


def websocket_accept(request: HttpRequest) -> HttpResponse:
    """The 101 answer to a WebSocket upgrade, or a 400 refusal.

    The checks are those of wsproto 1.x's server handshake for a server that
    accepts no extension and no subprotocol (RFC 6455 section 4.2.1).
    """
    if request.method != b"GET":
        return HttpResponse(400)
    connection: list[bytes] = []
    host = False
    keys: list[bytes] = []
    upgrade = b""
    version: bytes | None = None
    try:
        request.target.decode("ascii")
        for name, value in request.headers:
            if name == b"connection":
                connection = [t.decode("ascii").strip().lower().encode() for t in value.split(b",")]
            elif name == b"host":
                value.decode("idna")
                host = True
            elif name in (b"sec-websocket-extensions", b"sec-websocket-protocol"):
                for piece in value.split(b","):
                    piece.decode("ascii")
            elif name == b"sec-websocket-key":
                keys.append(value)
            elif name == b"sec-websocket-version":
                version = value
            elif name == b"upgrade":
                upgrade = value
    except UnicodeError:
        return HttpResponse(400)
    if (
        b"upgrade" not in connection
        or version != b"13"
        or not keys
        or upgrade.lower() != b"websocket"
        or not host
    ):
        return HttpResponse(400)
    # Repeated keys are joined with ", " before hashing, as wsproto does.
    token = base64.b64encode(hashlib.sha1(b", ".join(keys) + _ACCEPT_GUID).digest())
    return HttpResponse(
        101,
        ((b"upgrade", b"websocket"), (b"connection", b"Upgrade"), (b"sec-websocket-accept", token)),
    )


def websocket_messages(text: str, config: WireConfig) -> list[Message] | bytes:
    """The messages of one WebSocket text message, or the error reply to send.

    The network layer should close the socket with 1009 as soon as a frame
    header declares more than ``max_ws_message`` bytes; a message over it
    that gets here anyway is refused with the error reply.
    """
    messages = decode_body(text, max_bytes=config.max_ws_message, max_depth=config.max_json_depth)
    if isinstance(messages, BodyError):
        return BAD_MESSAGE
    return messages


def decode_form(body: bytes) -> tuple[str | None, str | None]:
    """The first ``message`` and ``jsonp`` fields of a form body.

    Exactly what ``parse_qs(body.decode("utf-8"), keep_blank_values=True)``
    gives (nothing for a body that is not UTF-8), computed with C-level
    decoding for the usual body: ASCII, whose fields are all named
    ``message`` or ``jsonp`` literally. Anything else goes to parse_qs.
    """
    if body.isascii():
        found: dict[bytes, str] = {}
        for part in body.split(b"&"):
            name, eq, value = part.partition(b"=")
            if not eq or name not in _FORM_NAMES:
                break
            if name not in found:
                if b"+" in value:
                    value = value.replace(b"+", b" ")
                # ASCII in, so this decodes exactly the escaped bytes
                found[name] = _unquote(value).decode("utf-8", "replace")
        else:
            return found.get(b"message"), found.get(b"jsonp")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return None, None
    return _first(form, "message"), _first(form, "jsonp")


def _unquote(value: bytes) -> bytes:
    """``unquote_to_bytes(value)``, in C for the usual value."""
    if value.find(b"%") < 0:
        return value
    # The quoted-printable decoder turns each "=XX" into its byte, and is
    # unquote_to_bytes once every "%" starts an escape and no "=" is there
    # to be read as one, nor a CR or LF to make a soft line break. Each
    # escape takes 3 bytes to 1; any other "=" takes fewer away (a lone one
    # at the end is dropped, "==" gives "=", "=x" stays), so the length
    # tells whether every "%" was an escape.
    if value.find(b"=") < 0 and value.find(b"\n") < 0 and value.find(b"\r") < 0:
        decoded = a2b_qp(value.replace(b"%", b"="))
        if len(decoded) == len(value) - 2 * value.count(b"%"):
            return decoded
    return unquote_to_bytes(value)


def escape_js(body: bytes) -> bytes:
    """JSON made safe inside a JavaScript call: U+2028 and U+2029 are valid
    in JSON but end a line in JavaScript."""
    return body.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None
