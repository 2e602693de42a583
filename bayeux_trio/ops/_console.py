"""The operator's console: its static page, and the tickets of its live tail.

**The page** (``ServerConfig.console_path``) is three files,
``bayeux_trio/static/console/index.html``, ``console.js`` and ``console.css``.
They hold no data: everything the page shows comes from the admin API, called
with the token the operator types. They are answered with ``Cache-Control:
no-store``, a Content-Security-Policy that allows this origin's scripts,
styles and connections only (no inline code, no framing), ``nosniff``,
``no-referrer``, and never a CORS header. The page is answered at
``<console_path>/`` and at ``<console_path>``, where its relative URLs
(``console.js``) are given the path's last segment so that they resolve to
the same files.

**The tail.** ``POST <admin>/tail-ticket`` hands the page a ticket (192
random bits, single use, good for :data:`TICKET_TTL` seconds) that its
client.js sends once, in its handshake's ``ext.consoleTicket``. The session
that handshake makes may subscribe to any channel (not ``/meta/**``), even
where the access rules or other extensions would refuse it; its publishes go
through them as anyone's. An unknown, expired or reused ticket refuses the
handshake with ``401::Invalid console ticket`` (final: the client does not
retry). Tickets live in this process's memory: the page must talk to the
node that issued its ticket.

:class:`ConsoleGate` does it with two extensions: :attr:`ConsoleGate.first`
runs before every other one (the server keeps it first) and takes the ticket
out of ``ext`` before any of them sees it; :attr:`ConsoleGate.last` runs
after every other one (the server keeps it last) and undoes what they did to
the console's handshake and subscribes. The session is marked in its private
``access`` data (:data:`CONSOLE_MARK`), which a cluster carries with it.
The server puts the gate in place when the first ticket is issued: until the
tail is used, no message pays for it (with no other extension, the engine
keeps its path for a lone publish, ~12 µs shorter than through two hooks),
and a ``consoleTicket`` sent before then is an ``ext`` field like any other.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayeux_core import (
    Extension,
    Message,
    MessageContext,
    MessageKind,
    is_meta,
    is_valid_pattern,
    message_kind,
    refuse,
)
from bayeux_core.wire import HttpRequest, HttpResponse

__all__ = [
    "CONSOLE_MARK",
    "INVALID_TICKET",
    "TICKET_FIELD",
    "TICKET_TTL",
    "ConsoleFiles",
    "ConsoleGate",
    "ConsoleTickets",
    "is_console",
]

#: where the page's client.js puts its ticket, in the handshake's ``ext``
TICKET_FIELD = "consoleTicket"
#: the key of a console session's private ``access`` data
CONSOLE_MARK = "bayeux.console"
#: the error of a handshake whose ticket is unknown, expired or used
INVALID_TICKET = "401::Invalid console ticket"
#: seconds a ticket stays good
TICKET_TTL = 60
#: tickets outstanding at once; past it the oldest is dropped
MAX_TICKETS = 1000

#: the page's files: relative URL -> file name
_FILES = {"": "index.html", "console.js": "console.js", "console.css": "console.css"}
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}
#: This origin's scripts, styles and connections (WebSocket included) only:
#: no inline code, no framing, no <base>, no form posts.
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_SECURITY = (
    (b"cache-control", b"no-store"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
#: a relative URL in the page (not absolute, not rooted, not a fragment or data:)
_RELATIVE = re.compile(rb'((?:href|src)=")(?![a-zA-Z][a-zA-Z0-9+.-]*:|/|#)')


def is_console(access: Any) -> bool:
    """True for the ``access`` data of a session made with a console ticket."""
    return type(access) is dict and access.get(CONSOLE_MARK) is True


class ConsoleTickets:
    """Single-use tickets for the console's tail, in this process's memory.

    ``clock`` is monotonic seconds (tests move it).
    """

    def __init__(
        self, *, ttl: float = TICKET_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        #: ticket -> when it expires, oldest first
        self._live: dict[str, float] = {}

    def issue(self) -> str:
        now = self.clock()
        live = self._live
        for ticket in [t for t, expires in live.items() if expires < now]:
            del live[ticket]
        while len(live) >= MAX_TICKETS:
            del live[next(iter(live))]
        ticket = secrets.token_urlsafe(24)
        live[ticket] = now + self.ttl
        return ticket

    def redeem(self, ticket: object) -> bool:
        """True (once) for a ticket issued here and not expired."""
        if type(ticket) is not str:
            return False
        expires = self._live.pop(ticket, None)
        return expires is not None and self.clock() <= expires

    def __len__(self) -> int:
        return len(self._live)


class _First(Extension):
    outgoing_deliveries = False

    def __init__(self, gate: ConsoleGate) -> None:
        self._gate = gate

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        return self._gate.before(message, context)


class _Last(Extension):
    outgoing_deliveries = False

    def __init__(self, gate: ConsoleGate) -> None:
        self._gate = gate

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        return self._gate.after(message, context)


class ConsoleGate:
    """The console's session: its ticket checked, and its subscribes let through.

    The engine runs its extensions one message at a time, synchronously: what
    :meth:`before` saw of the message being handled is still current when
    :meth:`after` runs on it (a message dropped on the way leaves a note the
    next message replaces).
    """

    def __init__(self, tickets: ConsoleTickets) -> None:
        self.tickets = tickets
        #: the extension to run before every other one, and the one after
        self.first: Extension = _First(self)
        self.last: Extension = _Last(self)
        #: the verdict on the ticket of the handshake being handled (None: none given)
        self._verdict: bool | None = None
        #: (client id, subscription) of the console subscribe being handled
        self._subscribe: tuple[str | None, Any] | None = None

    def before(self, message: Message, context: MessageContext) -> Message:
        kind = message_kind(message)
        self._subscribe = None
        if kind is MessageKind.HANDSHAKE:
            self._verdict = None
            ext = message.get("ext")
            if type(ext) is dict and TICKET_FIELD in ext:
                ticket = ext[TICKET_FIELD]
                # A copy: the sender may share the dict; nobody after us sees it.
                rest = {key: value for key, value in ext.items() if key != TICKET_FIELD}
                if rest:
                    message["ext"] = rest
                else:
                    del message["ext"]
                self._verdict = self.tickets.redeem(ticket)
                if not self._verdict:
                    refuse(message, INVALID_TICKET, final=True)
        elif kind is MessageKind.SUBSCRIBE and is_console(context.access):
            self._subscribe = (context.client_id, message.get("subscription"))
        return message

    def after(self, message: Message, context: MessageContext) -> Message:
        kind = message_kind(message)
        if kind is MessageKind.HANDSHAKE:
            verdict, self._verdict = self._verdict, None
            if verdict is False:
                refuse(message, INVALID_TICKET, final=True)  # whatever came after said
            elif verdict:
                message.pop("error", None)
                message.pop("advice", None)
                access = context.access
                if access is None:
                    context.access = {CONSOLE_MARK: True}
                elif type(access) is dict:
                    context.access = {**access, CONSOLE_MARK: True}
            return message
        pending, self._subscribe = self._subscribe, None
        if kind is MessageKind.SUBSCRIBE and pending is not None:
            client_id, subscription = pending
            named = subscription if type(subscription) is list else [subscription]
            # Not /meta/**, nor what is not a pattern: the engine refuses those.
            if client_id == context.client_id and all(
                type(pattern) is str and is_valid_pattern(pattern) and not is_meta(pattern)
                for pattern in named
            ):
                message["subscription"] = subscription
                message.pop("error", None)
                message.pop("advice", None)
        return message


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: bytes
    mtime: float


class ConsoleFiles:
    """The page's three files under ``path``, read again when they change."""

    def __init__(self, path: str, directory: Path | None = None) -> None:
        self.path = path
        self.directory = (
            directory
            if directory is not None
            else Path(__file__).resolve().parent.parent / "static" / "console"
        )
        self._cache: dict[str, _File] = {}

    def owns(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + "/")

    def respond(self, request: HttpRequest, path: str) -> HttpResponse:
        """The answer to a request for ``path`` (one :meth:`owns`)."""
        if request.method not in (b"GET", b"HEAD"):
            return HttpResponse(
                405, (*_SECURITY, _TEXT, (b"allow", b"GET, HEAD")), b"Method not allowed"
            )
        bare = path == self.path
        name = "index.html" if bare else _FILES.get(path[len(self.path) + 1 :])
        found = self._read(name) if name is not None else None
        if found is None:
            return HttpResponse(404, (*_SECURITY, _TEXT), b"Not found")
        body = found.body
        if bare:
            # Without the slash, "console.js" would resolve beside the console
            # path, not under it: point it under it.
            segment = self.path.rsplit("/", 1)[1].encode()
            body = _RELATIVE.sub(lambda m: m[1] + segment + b"/", body)
        return HttpResponse(200, (*_SECURITY, (b"content-type", found.content_type)), body)

    def _read(self, name: str) -> _File | None:
        # Three small files, for an operator's page: a stat per request, the
        # bytes read again only when the file changed.
        target = self.directory / name
        try:
            mtime = target.stat().st_mtime
            cached = self._cache.get(name)
            if cached is not None and cached.mtime == mtime:
                return cached
            body = target.read_bytes()
        except OSError:
            return None
        found = _File(body, _TYPES[target.suffix], mtime)
        self._cache[name] = found
        return found
