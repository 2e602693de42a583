"""The admin API and the metrics endpoint (``admin_path``, ``metrics_path``).

Both are off unless configured. The admin API wants ``Authorization: Bearer
<token>`` (compared in constant time) on every request, answers JSON, and never
sends CORS headers, so a web page on another origin cannot call it::

    GET    <admin>/stats                          counters, rates, nodes (the console's overview)
    GET    <admin>/clients                        every session on this node
    GET    <admin>/clients?q=TEXT&limit=N         those whose id starts with, user is or
                                                  starts with, or address holds TEXT
    GET    <admin>/clients/<id>                   one session
    DELETE <admin>/clients/<id>                   kick it (reconnect: none)
    DELETE <admin>/clients/<id>/subscriptions/<channel>
                                                  drop one subscription
    GET    <admin>/channels                       pattern -> subscribed client ids
    GET    <admin>/channels?summary=1&q=&limit=   busiest first: subscribers, presence
    GET    <admin>/presence?channel=/chat/room    who is in a channel with presence
    POST   <admin>/publish   {"channel", "data", "ext"?}
    POST   <admin>/tail-ticket                    a single-use ticket for the console's tail

With a Redis bus the session calls see the sessions this node holds (clients
connected to it); a publish reaches the whole cluster, and presence is the
cluster's members as this node last read them. docs/operations.md.

With ``console_path`` these answers also serve the operator's console
(``bayeux_trio.ops._console``), whose page is answered here too.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import orjson
import trio

from bayeux_core import LocalProtocolError, Session, is_pattern, is_valid_name
from bayeux_core.wire import HttpRequest, HttpResponse

from ._console import TICKET_TTL, ConsoleFiles, ConsoleGate, ConsoleTickets
from ._health import method_not_allowed
from ._stats import ClientLog, History, Totals, rss_bytes, wall_time
from ._view import ServerView

if TYPE_CHECKING:
    from ._metrics import ServerMetrics

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Operations", "client_info"]

log = logging.getLogger("bayeux.admin")

_JSON = (
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"no-store"),
)
#: search answers: entries listed by default, and at most
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def client_info(
    server: ServerView, session: Session, seen: ClientLog | None = None
) -> dict[str, Any]:
    """What the admin API and :meth:`BayeuxServer.clients` say about a session.

    ``connection`` is the transport of its open stream or held connect (None
    between two long-polling connects); ``expires_in`` is how many seconds it
    has left before its held connect is answered or, without one, before it
    expires unless a connect comes. ``user`` is who an extension said the
    session is; ``address`` (``ip:port``) and ``age`` (seconds since the
    handshake) come from ``seen`` (None without it, or for a session this
    node took over from another).
    """
    conn = session.stream
    if conn is None and session.held is not None:
        conn = session.held.conn
    transport = server.hub.transport_of(conn) if conn is not None else None
    left = session.deadline - trio.current_time()
    return {
        "id": session.client_id,
        "state": session.state.value,
        "connection": transport,
        "held": session.held is not None,
        "subscriptions": sorted(session.subscriptions),
        "queued": len(session.queue),
        "expires_in": round(left, 3) if math.isfinite(left) else None,
        "user": session.user,
        "address": seen.address(session.client_id) if seen is not None else None,
        "age": _rounded(seen.age(session.client_id)) if seen is not None else None,
    }


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _query(request: HttpRequest) -> dict[str, list[str]]:
    """The query's parameters, percent-decoded (a "+" stays a plus: an admin
    parameter, not a Bayeux form; channel names may hold one)."""
    query = urlsplit(request.target.decode("utf-8", "replace")).query
    found: dict[str, list[str]] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        found.setdefault(unquote(name), []).append(unquote(value))
    return found


def _limit(params: dict[str, list[str]]) -> int | None:
    """``limit`` (default :data:`DEFAULT_LIMIT`, at most :data:`MAX_LIMIT`); None if bad."""
    given = params.get("limit")
    if not given:
        return DEFAULT_LIMIT
    try:
        limit = int(given[-1])
    except ValueError:
        return None
    return limit if 1 <= limit <= MAX_LIMIT else None


class Operations:
    """Answers the admin and metrics paths of one server."""

    def __init__(
        self,
        server: ServerView,
        *,
        admin_path: str | None = None,
        admin_token: str | None = None,
        metrics_path: str | None = None,
        console_path: str | None = None,
    ) -> None:
        self.server = server
        self.admin_path = admin_path
        self._token = (admin_token or "").encode()
        self.metrics_path = metrics_path
        self.metrics: ServerMetrics | None = None
        if self.metrics_path is not None:
            from ._metrics import ServerMetrics

            self.metrics = ServerMetrics(server)
        #: what /stats and the client listings add (admin API only)
        self.totals: Totals | None = None
        self.seen: ClientLog | None = None
        if admin_path is not None:
            self.totals = Totals()
            store = server.engine.store
            self.seen = ClientLog(lambda client_id: store.get(client_id) is not None)
            server.hub.add_listener(self.totals)
            server.hub.add_listener(self.seen)
        #: the console's page, tail tickets and rates, when it is on
        self.console: ConsoleFiles | None = None
        self.tickets: ConsoleTickets | None = None
        self.gate: ConsoleGate | None = None
        self.history: History | None = None
        if console_path is not None:
            if admin_path is None:
                raise ValueError("console_path needs admin_path")
            self.console = ConsoleFiles(console_path)
            self.tickets = ConsoleTickets()
            self.gate = ConsoleGate(self.tickets)
            self.history = History()
        #: called before a tail ticket is issued (the server opens the console's gate)
        self.on_ticket: Callable[[], None] | None = None
        #: this node's name in /stats: the bus's node id, else host:pid
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self.started = wall_time()
        self._started_at = time.monotonic()

    def serving(self) -> None:
        """The server has started to serve: /stats counts its uptime from now."""
        self.started = wall_time()
        self._started_at = time.monotonic()

    def sample(self) -> None:
        """Take one sample of the rates (the server's 1 s timer, console on)."""
        if self.history is None or self.totals is None:
            return
        self.history.sample(
            self.totals.publishes,
            self.server.hub.delivered,
            now=time.monotonic(),
            wall=wall_time(),
        )

    def respond(self, request: HttpRequest, body: bytes, path: str) -> HttpResponse | None:
        """The answer to ``request`` if ``path`` is ours; None to let the caller route it."""
        if path == self.metrics_path and self.metrics is not None:
            return self._metrics(request, self.metrics)
        if self.console is not None and self.console.owns(path):
            return self.console.respond(request, path)
        admin = self.admin_path
        if admin is None or not (path == admin or path.startswith(admin + "/")):
            return None
        try:
            status, answer, allow = self._admin(request, body, path[len(admin) :])
        except Exception:
            log.exception("admin request failed")
            status, answer, allow = 500, {"error": "internal error"}, None
        headers: tuple[tuple[bytes, bytes], ...] = _JSON
        if status == 401:
            headers += ((b"www-authenticate", b'Bearer realm="bayeux-admin"'),)
        if allow is not None:
            headers += ((b"allow", allow),)
        return HttpResponse(status, headers, orjson.dumps(answer))

    def _metrics(self, request: HttpRequest, metrics: ServerMetrics) -> HttpResponse:
        refused = method_not_allowed(request)
        if refused is not None:
            return refused
        from ._metrics import CONTENT_TYPE

        headers = ((b"content-type", CONTENT_TYPE.encode()), (b"cache-control", b"no-store"))
        return HttpResponse(200, headers, metrics.render())

    # ------------------------------------------------------------------ admin

    def _authorized(self, request: HttpRequest) -> int | None:
        """None if the bearer token matches; else 401 (none given) or 403."""
        given = None
        for name, value in request.headers:
            if name == b"authorization":
                given = value
        if given is None or given[:7].lower() != b"bearer ":
            return 401
        # compare_digest: the time taken does not tell how much of it matched.
        if not self._token or not hmac.compare_digest(given[7:].strip(), self._token):
            return 403
        return None

    def _admin(self, request: HttpRequest, body: bytes, rest: str) -> tuple[int, Any, bytes | None]:
        refused = self._authorized(request)
        if refused == 401:
            return 401, {"error": "missing bearer token"}, None
        if refused == 403:
            return 403, {"error": "wrong token"}, None
        server = self.server
        method = request.method
        parts = [unquote(p) for p in rest.strip("/").split("/")] if rest.strip("/") else []
        if parts == ["stats"]:
            if method != b"GET":
                return 405, {"error": "method not allowed"}, b"GET"
            return 200, self.stats(), None
        if parts == ["clients"]:
            if method != b"GET":
                return 405, {"error": "method not allowed"}, b"GET"
            return self._clients(_query(request))
        if parts == ["channels"]:
            if method != b"GET":
                return 405, {"error": "method not allowed"}, b"GET"
            params = _query(request)
            if params.get("summary", ["0"])[-1] in ("1", "true"):
                return self._channel_summary(params)
            return 200, {"channels": server.subscriptions()}, None
        if parts == ["tail-ticket"]:
            if method != b"POST":
                return 405, {"error": "method not allowed"}, b"POST"
            if self.tickets is None:
                return 404, {"error": "the console is off (bayeux serve --console-path PATH)"}, None
            if self.on_ticket is not None:
                self.on_ticket()
            return 200, {"ticket": self.tickets.issue(), "expires_in": TICKET_TTL}, None
        if parts == ["presence"]:
            if method != b"GET":
                return 405, {"error": "method not allowed"}, b"GET"
            return self._presence(request)
        if parts == ["publish"]:
            if method != b"POST":
                return 405, {"error": "method not allowed"}, b"POST"
            return self._publish(body)
        if len(parts) == 2 and parts[0] == "clients":
            client_id = parts[1]
            if method == b"GET":
                info = server.client(client_id)
                if info is None:
                    return 404, {"error": "no such client"}, None
                return 200, info, None
            if method == b"DELETE":
                if not server.disconnect(client_id):
                    return 404, {"error": "no such client"}, None
                log.info("admin: disconnected client %s", client_id)
                return 200, {"disconnected": client_id}, None
            return 405, {"error": "method not allowed"}, b"GET, DELETE"
        if len(parts) >= 3 and parts[0] == "clients" and parts[2] == "subscriptions":
            if method != b"DELETE":
                return 405, {"error": "method not allowed"}, b"DELETE"
            channel = "/" + "/".join(parts[3:])
            if not server.unsubscribe(parts[1], channel):
                return 404, {"error": "no such client or subscription"}, None
            log.info("admin: unsubscribed client %s from %s", parts[1], channel)
            return 200, {"unsubscribed": channel, "client": parts[1]}, None
        return 404, {"error": "not found"}, None

    # ------------------------------------------------------------- the console

    def stats(self) -> dict[str, Any]:
        """The answer of ``GET <admin>/stats``: this node's state, counters and rates."""
        server = self.server
        engine = server.engine
        sessions = subscriptions = held = queued = 0
        patterns: set[str] = set()
        for session in engine.store:
            sessions += 1
            subscriptions += len(session.subscriptions)
            patterns.update(session.subscriptions)
            queued += len(session.queue)
            if session.held is not None:
                held += 1
        bus = server.bus
        node = str(bus.stats.get("node", self.node)) if bus is not None else self.node
        totals = self.totals if self.totals is not None else Totals()
        now = wall_time()
        return {
            "node": node,
            "engine": "memory" if bus is None else "redis",
            "mount": server.mount,
            "admin_path": self.admin_path,
            "started": round(self.started, 3),
            "uptime": round(time.monotonic() - self._started_at, 3),
            "time": round(now, 3),
            "connections": dict(server.open_connections()),
            "sessions": sessions,
            "subscriptions": subscriptions,
            "channels": len(patterns),
            "held_connects": held,
            "queued": queued,
            "rss_bytes": rss_bytes(),
            "totals": {
                "publishes": totals.publishes,
                "deliveries": server.hub.delivered,
                "handshakes": totals.handshakes,
                "overflows": totals.overflows,
                "errors": dict(sorted(engine.error_counts.items())),
            },
            "history": self.history.as_list() if self.history is not None else [],
            "nodes": server.nodes(),
        }

    def _clients(self, params: dict[str, list[str]]) -> tuple[int, Any, bytes | None]:
        """Every session (no parameters), or a search: ``q`` and ``limit``."""
        store = self.server.engine.store
        seen = self.seen
        if not params:
            clients = [client_info(self.server, s, seen) for s in store]
            return 200, {"clients": clients, "total": len(clients)}, None
        limit = _limit(params)
        if limit is None:
            return 400, {"error": f"limit: want a whole number from 1 to {MAX_LIMIT}"}, None
        text = params.get("q", [""])[-1]
        matched = [s for s in store if not text or self._client_matches(s, text)]
        clients = [client_info(self.server, s, seen) for s in matched[:limit]]
        return 200, {"clients": clients, "total": len(matched)}, None

    def _client_matches(self, session: Session, text: str) -> bool:
        """clientId prefix, user exact or prefix, address substring."""
        if session.client_id.startswith(text):
            return True
        user = session.user
        if user is not None and user.startswith(text):
            return True
        address = self.seen.address(session.client_id) if self.seen is not None else None
        return address is not None and text in address

    def _channel_summary(self, params: dict[str, list[str]]) -> tuple[int, Any, bytes | None]:
        """Subscribed patterns, busiest first, with their presence (``q``, ``limit``)."""
        limit = _limit(params)
        if limit is None:
            return 400, {"error": f"limit: want a whole number from 1 to {MAX_LIMIT}"}, None
        text = params.get("q", [""])[-1].lower()
        counts: dict[str, int] = {}
        for session in self.server.engine.store:
            for pattern in session.subscriptions:
                if not text or text in pattern.lower():
                    counts[pattern] = counts.get(pattern, 0) + 1
        busiest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        channels = []
        for channel, subscribers in busiest[:limit]:
            members = self._members(channel)
            channels.append(
                {
                    "channel": channel,
                    "subscribers": subscribers,
                    "presence": members is not None,
                    "members": members,
                }
            )
        return 200, {"channels": channels, "total": len(counts)}, None

    def _members(self, channel: str) -> int | None:
        """How many are in ``channel`` if it has presence; None if it has none."""
        if not self.server.engine.config.presence or is_pattern(channel):
            return None
        try:
            return len(self.server.presence(channel))
        except LocalProtocolError:
            return None

    # ---------------------------------------------------------------- others

    def _presence(self, request: HttpRequest) -> tuple[int, Any, bytes | None]:
        """``?channel=/chat/room``: its members and their count."""
        given = [value for value in _query(request).get("channel", []) if value]
        if len(given) != 1:
            return 400, {"error": "expected one channel parameter: ?channel=/chat/room"}, None
        (channel,) = given
        if not is_valid_name(channel) or is_pattern(channel):
            return 400, {"error": f"not a channel name: {channel!r}"}, None
        if not self.server.engine.config.presence:
            return 404, {"error": "presence is off (bayeux serve --presence PATTERN)"}, None
        try:
            members = self.server.presence(channel)
        except LocalProtocolError:
            return 404, {"error": f"no presence on {channel}"}, None
        return 200, {"channel": channel, "members": members, "count": len(members)}, None

    def _publish(self, body: bytes) -> tuple[int, Any, bytes | None]:
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, {"error": "body must be JSON"}, None
        if type(message) is not dict or type(message.get("channel")) is not str:
            return 400, {"error": "expected an object with a channel"}, None
        if "data" not in message:
            return 400, {"error": "expected data"}, None
        try:
            self.server.publish(message["channel"], message["data"], ext=message.get("ext"))
        except LocalProtocolError as exc:
            return 400, {"error": str(exc)}, None
        return 200, {"published": message["channel"]}, None
