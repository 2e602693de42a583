"""A fast path past h11 for the common shape of HTTP/1.1 request.

h11 stays the parser of record. :func:`parse` recognises a strict subset of
what h11 accepts: a complete ``GET`` or ``POST`` request for an origin-form
target, ``HTTP/1.1``, header lines of plain tokens and visible bytes ending
in CRLF, one ``Host``, at most one ``Content-Length`` (within our limits) and
its whole body already in the buffer. It returns the request as the
neutral :class:`bayeux_core.wire.HttpRequest` the server routes on, with
exactly what h11 would give for the same bytes: method, target, version, the
headers as (lower-case name, value) pairs, the body and the framing (the
differential tests in ``tests/trio/test_http_fastpath.py`` and
``fuzz/fuzz_http_fastpath.py`` hold it to that), or ``None``. On ``None``
the caller gives the bytes to h11, which parses them as it always did,
errors included. Header names keep no original case: nothing reads it, and
h11 sees the original bytes whenever it takes over. A request whose
handling needs h11's machinery is always declined: ``Transfer-Encoding``,
``Expect``, any ``Connection`` value other than ``close`` or ``keep-alive``,
obs-fold, bare LF or CR, HTTP/1.0. One ``Upgrade`` is taken only on a
``GET`` without ``Content-Length`` whose one ``Connection`` header lists
``upgrade`` (and at most ``keep-alive`` beside it), the WebSocket handshake's
shape: h11 would yield that request and then pause, with everything after
the head left to the new protocol (``FastRequest.upgrade``). :class:`FastParser`
remembers a connection's last head, so a repeated one is not parsed again.

:func:`may_complete` says whether waiting for more bytes can make a buffer
that :func:`parse` declined into one it accepts without h11 having answered
sooner: h11 would also be waiting for data on it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from bayeux_core.wire import HttpRequest

__all__ = ["FastParser", "FastRequest", "may_complete", "parse"]

# The request line and the header lines, each a subset of h11's grammar
# (h11/_abnf.py): a header value here is visible ASCII or obs-text, with inner
# spaces or tabs; h11 also takes control bytes, which we leave to it.
_VALUE_BYTE = rb"[\x21-\x7e\x80-\xff]"
_LINE = (
    rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*((?:"
    + _VALUE_BYTE
    + rb"+(?:[ \t]+"
    + _VALUE_BYTE
    + rb"+)*)?)[ \t]*\r\n"
)
_REQUEST_LINE = re.compile(rb"(GET|POST) (/[\x21-\x7e]*) HTTP/1\.1\r\n")
_HEADER_LINE = re.compile(_LINE)
#: headers whose presence means h11 must handle the request
_DECLINE = frozenset((b"transfer-encoding", b"expect"))
#: the tokens a Connection header may list beside ``upgrade``
_UPGRADE_TOKENS = frozenset((b"upgrade", b"keep-alive"))
#: a head's request, body length, close, and upgrade
_Head = tuple[HttpRequest, int, bool, bool]


class FastRequest(NamedTuple):
    """A request parsed by :func:`parse`."""

    #: the head, as h11 would have parsed it (header names lower-case)
    request: HttpRequest
    body: bytes
    #: bytes of the buffer taken by this request (head and body)
    size: int
    #: the client sent ``Connection: close``: h11 would close after the response
    close: bool
    #: a protocol upgrade (the WebSocket handshake): h11 would pause after
    #: this request, leaving the bytes after ``size`` to the new protocol
    upgrade: bool = False


class FastParser:
    """:func:`parse` for one connection: its limits, and its last head.

    A client usually repeats one head (a notifier posting the same kind of
    message): a head byte-for-byte equal to the last one accepted gets the
    same result without being parsed again.
    """

    __slots__ = ("_head", "_parsed", "max_body", "max_head")

    def __init__(self, max_head: int, max_body: int) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self._head = b""
        self._parsed: _Head | None = None

    def parse(self, data: bytes) -> FastRequest | None:
        """The request at the start of ``data``, or None: then h11 must see it.

        A head longer than ``max_head`` bytes or a declared body over
        ``max_body`` is declined, so that h11's path answers it (431, 413).
        """
        end = data.find(b"\r\n\r\n", 0, self.max_head)
        if end < 0:
            return None
        body = end + 4
        head = data[:body]
        parsed = self._parsed
        if parsed is None or head != self._head:
            parsed = _parse_head(data, end, self.max_body)
            if parsed is None:
                return None
            self._head = head
            self._parsed = parsed
        request, length, close, upgrade = parsed
        size = body + length
        if len(data) < size:
            return None
        return FastRequest(request, data[body:size], size, close, upgrade)


def parse(data: bytes, max_head: int, max_body: int) -> FastRequest | None:
    """:meth:`FastParser.parse` on its own."""
    return FastParser(max_head, max_body).parse(data)


def _parse_head(data: bytes, end: int, max_body: int) -> _Head | None:
    """The request whose head ends at ``end`` (its CRLFCRLF), and its framing."""
    first = _REQUEST_LINE.match(data, 0, end + 2)
    if first is None:
        return None
    pairs: list[tuple[bytes, bytes]] = []
    length = 0
    seen_length = False
    host = False
    close = False
    #: Upgrade headers, and whether a Connection header listed upgrade
    upgrades = 0
    connection: bytes | None = None
    pos = first.end()
    stop = end + 2
    match = _HEADER_LINE.match
    while pos < stop:
        line = match(data, pos, stop)
        if line is None:
            return None
        pos = line.end()
        name, value = line.groups()
        lower = name.lower()
        if lower == b"content-length":
            # h11 takes "5, 5" and repeats of one value; we take one plain one
            if seen_length or not value.isdigit() or len(value) > 20:
                return None
            seen_length = True
            length = int(value)
            if length > max_body:
                return None
        elif lower == b"host":
            if host:
                return None
            host = True
        elif lower == b"connection":
            if connection is not None:
                return None
            connection = value.lower()
            if connection == b"close":
                close = True
        elif lower == b"upgrade":
            # h11 proposes a switch only for a value with a token in it
            if not any(token.strip() for token in value.split(b",")):
                return None
            upgrades += 1
        elif lower in _DECLINE:
            return None
        pairs.append((lower, value))
    if not host:
        return None
    if upgrades:
        # The WebSocket handshake's shape only; h11 pauses after it.
        if upgrades > 1 or seen_length or first[1] != b"GET" or connection is None:
            return None
        tokens = [token.strip() for token in connection.split(b",")]
        if b"upgrade" not in tokens or not _UPGRADE_TOKENS.issuperset(tokens):
            return None
        return HttpRequest(first[1], first[2], pairs, b"1.1"), 0, False, True
    if connection is not None and connection not in (b"close", b"keep-alive"):
        return None
    return HttpRequest(first[1], first[2], pairs, b"1.1"), length, close, False


def may_complete(data: bytes, max_head: int) -> bool:
    """True if h11 would wait for more bytes on ``data``, which holds no whole head.

    It would unless its first byte is obviously wrong, the buffer is over
    its limit, or a bare LF may already have ended the head.
    """
    return (
        len(data) <= max_head
        and data[:1].isalpha()
        and data.count(b"\n") == data.count(b"\r\n")
        and b"\r\n\r\n" not in data
    )
