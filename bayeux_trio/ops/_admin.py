"""The admin API and the metrics endpoint (``admin_path``, ``metrics_path``).

Both are off unless configured. The admin API wants ``Authorization: Bearer
<token>`` (compared in constant time) on every request, answers JSON, and never
sends CORS headers, so a web page on another origin cannot call it::

    GET    <admin>/clients                        every session on this node
    GET    <admin>/clients/<id>                   one session
    DELETE <admin>/clients/<id>                   kick it (reconnect: none)
    DELETE <admin>/clients/<id>/subscriptions/<channel>
                                                  drop one subscription
    GET    <admin>/channels                       pattern -> subscribed client ids
    GET    <admin>/presence?channel=/chat/room    who is in a channel with presence
    POST   <admin>/publish   {"channel", "data", "ext"?}

With a Redis bus the session calls see the sessions this node holds (clients
connected to it); a publish reaches the whole cluster, and presence is the
cluster's members as this node last read them. docs/operations.md.
"""

from __future__ import annotations

import hmac
import logging
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import orjson
import trio

from bayeux_core import LocalProtocolError, Session, is_pattern, is_valid_name
from bayeux_core.wire import HttpRequest, HttpResponse

from ._health import method_not_allowed
from ._view import ServerView

if TYPE_CHECKING:
    from ._metrics import ServerMetrics

__all__ = ["Operations", "client_info"]

log = logging.getLogger("bayeux.admin")

_JSON = (
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"no-store"),
)


def client_info(server: ServerView, session: Session) -> dict[str, Any]:
    """What the admin API and :meth:`BayeuxServer.clients` say about a session.

    ``connection`` is the transport of its open stream or held connect (None
    between two long-polling connects); ``expires_in`` is how many seconds it
    has left before its held connect is answered or, without one, before it
    expires unless a connect comes.
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
    }


class Operations:
    """Answers the admin and metrics paths of one server."""

    def __init__(
        self,
        server: ServerView,
        *,
        admin_path: str | None = None,
        admin_token: str | None = None,
        metrics_path: str | None = None,
    ) -> None:
        self.server = server
        self.admin_path = admin_path
        self._token = (admin_token or "").encode()
        self.metrics_path = metrics_path
        self.metrics: ServerMetrics | None = None
        if self.metrics_path is not None:
            from ._metrics import ServerMetrics

            self.metrics = ServerMetrics(server)

    def respond(self, request: HttpRequest, body: bytes, path: str) -> HttpResponse | None:
        """The answer to ``request`` if ``path`` is ours; None to let the caller route it."""
        if path == self.metrics_path and self.metrics is not None:
            return self._metrics(request, self.metrics)
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
        if parts == ["clients"]:
            if method != b"GET":
                return 405, {"error": "method not allowed"}, b"GET"
            return 200, {"clients": server.clients()}, None
        if parts == ["channels"]:
            if method != b"GET":
                return 405, {"error": "method not allowed"}, b"GET"
            return 200, {"channels": server.subscriptions()}, None
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

    def _presence(self, request: HttpRequest) -> tuple[int, Any, bytes | None]:
        """``?channel=/chat/room``: its members and their count."""
        query = urlsplit(request.target.decode("utf-8", "replace")).query
        # An admin parameter, not a Bayeux form: percent-decoding is all it needs
        # (a "+" stays a plus, as a channel name may hold one).
        given = []
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if unquote(name) == "channel" and value:
                given.append(unquote(value))
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
