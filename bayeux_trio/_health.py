"""The health endpoint (``ServerConfig.health_path``, default ``/health``).

``GET`` (or ``HEAD``) answers ``200`` with ``{"status": "ok", ...}`` while the
server can do its work, and ``503`` with ``{"status": "unavailable", ...}``
while its cluster bus cannot reach Redis, so that a load balancer stops
sending clients to a node that would only hold their requests. The in-memory
engine is always ok. The body says which engine, and for Redis the node id
and, during an outage, since when and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import h11
import orjson

if TYPE_CHECKING:
    from ._http import HttpConnection
    from ._server import BayeuxServer

__all__ = ["health", "respond"]

_HEADERS = [
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
]


def health(server: BayeuxServer) -> tuple[int, dict[str, Any]]:
    """The status code and the body of a health check of ``server``."""
    body: dict[str, Any] = {"status": "ok", "sessions": len(server.engine.store)}
    bus = server.bus
    if bus is None:
        body["engine"] = "memory"
        return 200, body
    stats = bus.stats
    body["engine"] = stats.get("engine", "redis")
    body["bus"] = stats
    if not stats.get("healthy", True):
        body["status"] = "unavailable"
        return 503, body
    return 200, body


def respond(conn: HttpConnection, request: h11.Request) -> None:
    """Answer ``request`` (to the health path) on ``conn``."""
    if request.method not in (b"GET", b"HEAD"):
        text = b"Method not allowed"
        headers = [
            (b"allow", b"GET, HEAD"),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(text)),
        ]
        conn._send(h11.Response(status_code=405, headers=headers), text)
        return
    status, body = health(conn.server)
    data = orjson.dumps(body)
    headers = [*_HEADERS, (b"content-length", b"%d" % len(data))]
    conn._send(h11.Response(status_code=status, headers=headers), data)
