"""Server options: one frozen value, checked when built."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bayeux_core import EngineConfig

__all__ = ["ServerConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """How the server listens and what it accepts. Times are in seconds.

    Attributes:
        host, port: where to listen (port 0 picks a free one).
        mount: the Bayeux endpoint path, as Faye's ``mount`` (``/faye``).
        engine: protocol timing and limits (``timeout`` is the connect hold).
        ping: WebSocket ping and EventSource comment period; None for no pings
            on WebSockets (EventSource streams still get one every 10 s, as
            with Faye, so proxies keep them open).
        static_dir: serve this directory's files at ``/`` next to the endpoint.
        allowed_origins: if set, requests whose ``Origin`` is not listed are
            refused with 403 (CORS, JSON-P, WebSocket). None: any origin, as
            Faye does.
        max_body: largest HTTP request body (413 beyond).
        max_ws_message: largest WebSocket message (closed with 1009 beyond).
        max_header: largest request head (431 beyond).
        max_connections: open connections at once; more are closed on accept.
        max_buffer: bytes of unsent output per connection before it is cut off.
        header_timeout: time to send a whole request head once it has begun.
        body_timeout: time to send a request body.
        idle_timeout: how long a kept-alive connection may sit idle.
        reuse_port: listen with SO_REUSEPORT, so that several processes share
            the port (``bayeux serve --workers N``).
    """

    host: str = "127.0.0.1"
    port: int = 9292
    mount: str = "/faye"
    engine: EngineConfig = field(default_factory=EngineConfig)
    ping: float | None = None
    static_dir: Path | None = None
    allowed_origins: frozenset[str] | None = None
    max_body: int = 1024 * 1024
    max_ws_message: int = 1024 * 1024
    max_header: int = 16 * 1024
    max_connections: int = 19_000
    max_buffer: int = 8 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 120.0
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if not self.mount.startswith("/") or (len(self.mount) > 1 and self.mount.endswith("/")):
            raise ValueError(f"mount must start with / and not end with one: {self.mount!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.ping is not None and not (math.isfinite(self.ping) and self.ping > 0):
            raise ValueError(f"ping must be a positive number of seconds: {self.ping!r}")
        for name in ("max_body", "max_ws_message", "max_header", "max_connections", "max_buffer"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("header_timeout", "body_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
