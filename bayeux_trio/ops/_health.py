"""The health endpoint (``ServerConfig.health_path``, default ``/health``).

``GET`` (or ``HEAD``) answers ``200`` with ``{"status": "ok", ...}`` while the
server can do its work, and ``503`` with ``{"status": "unavailable", ...}``
while its cluster bus cannot reach Redis, so that a load balancer stops
sending clients to a node that would only hold their requests. The in-memory
engine is always ok. The body says which engine, and for Redis the node id
and, during an outage, since when and why.
"""

from __future__ import annotations

from typing import Any

import orjson

from bayeux_core.wire import HttpRequest, HttpResponse

from ._view import ServerView

__all__ = ["health", "health_response", "method_not_allowed"]

_HEADERS = (
    (b"content-type", b"application/json; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
)
_READ_ONLY = HttpResponse(
    405,
    ((b"allow", b"GET, HEAD"), (b"content-type", b"text/plain; charset=utf-8")),
    b"Method not allowed",
)


def health(server: ServerView) -> tuple[int, dict[str, Any]]:
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


def method_not_allowed(request: HttpRequest) -> HttpResponse | None:
    """The 405 of a read-only endpoint for anything but GET and HEAD, else None."""
    return None if request.method in (b"GET", b"HEAD") else _READ_ONLY


def health_response(server: ServerView, request: HttpRequest) -> HttpResponse:
    """The answer to ``request`` (to the health path)."""
    refused = method_not_allowed(request)
    if refused is not None:
        return refused
    status, body = health(server)
    return HttpResponse(status, _HEADERS, orjson.dumps(body))
