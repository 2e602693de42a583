"""Server options: one frozen value, checked when built."""

from __future__ import annotations

import math
import ssl
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
        max_connections_per_address: open connections from one remote address
            (the TCP peer; X-Forwarded-For is not read); more are closed on
            accept. None: no limit (behind a proxy every peer is the proxy).
        max_buffer: bytes of unsent output per connection before it is cut off.
        header_timeout: time to send a whole request head once it has begun;
            with TLS, also the time to finish the handshake.
        body_timeout: time to send a request body.
        idle_timeout: how long a kept-alive connection may sit idle.
        reuse_port: listen with SO_REUSEPORT, so that several processes share
            the port (``bayeux serve --workers N``).
        health_path: answer ``GET`` here with the server's health (200, or 503
            while the Redis bus is down; ``bayeux_trio.ops._health``); checked
            before anything else. None: no health endpoint.
        admin_path: serve the admin API under this path (``bayeux_trio.ops._admin``,
            docs/operations.md); None (the default): no admin API.
        admin_token: the bearer token the admin API wants (at least 16
            characters); required with ``admin_path``. Not shown in ``repr``.
        metrics_path: answer ``GET`` here with Prometheus metrics (needs the
            ``metrics`` extra); None (the default): no metrics.
        console_path: serve the operator's console (a page that holds no
            data and reads everything from the admin API with the token the
            operator types; ``bayeux_trio.ops._console``) under this path.
            Needs ``admin_path``. None (the default): no console.
        reclaim_after: once open connections have fallen by at least this
            many, to half their peak or less, collect garbage cycles and trim
            the C heap (``bayeux_trio.server._reclaim``); None: never.
        max_service_calls: service calls (``BayeuxServer.add_service``) whose
            handlers run at once; a call past it gets the result
            ``503::Too many service calls`` at once, and runs no handler.
        certfile, keyfile: serve HTTPS and WSS with this certificate chain
            (PEM, the server's certificate first) and its private key (PEM,
            not encrypted); both or neither. The files are read when the
            server starts. None: plain HTTP and WebSocket.
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
    max_connections_per_address: int | None = None
    max_buffer: int = 8 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 120.0
    reuse_port: bool = False
    health_path: str | None = "/health"
    admin_path: str | None = None
    admin_token: str | None = field(default=None, repr=False)
    metrics_path: str | None = None
    console_path: str | None = None
    reclaim_after: int | None = 500
    max_service_calls: int = 1000
    certfile: Path | None = None
    keyfile: Path | None = None

    def __post_init__(self) -> None:
        if not self.mount.startswith("/") or (len(self.mount) > 1 and self.mount.endswith("/")):
            raise ValueError(f"mount must start with / and not end with one: {self.mount!r}")
        if self.health_path is not None and (
            not self.health_path.startswith("/") or self.health_path == self.mount
        ):
            raise ValueError(
                f"health_path must start with / and differ from mount: {self.health_path!r}"
            )
        paths = [self.mount, self.health_path]
        for name in ("admin_path", "metrics_path", "console_path"):
            path = getattr(self, name)
            if path is None:
                continue
            if (
                not path.startswith("/")
                or len(path) < 2
                or path.endswith("/")
                or path in paths
                or path.startswith(self.mount + "/")
                or self.mount.startswith(path + "/")
            ):
                raise ValueError(
                    f"{name} must start with /, not end with one, and differ from "
                    f"the other paths and the mount: {path!r}"
                )
            paths.append(path)
        if self.admin_path is not None and len(self.admin_token or "") < 16:
            raise ValueError("admin_path needs an admin_token of at least 16 characters")
        if self.console_path is not None:
            if self.admin_path is None:
                # The page holds no data: without the admin API it could show nothing.
                raise ValueError("console_path needs admin_path (and an admin_token)")
            console, admin = self.console_path, self.admin_path
            if console.startswith(admin + "/") or admin.startswith(console + "/"):
                raise ValueError(
                    f"console_path and admin_path must not be under one another: {console!r}"
                )
        if self.metrics_path is not None:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                raise ValueError(
                    "metrics_path needs prometheus_client: install the metrics extra: "
                    "pip install '.[metrics]' in a clone of bayeux-trio"
                ) from None
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.ping is not None and not (math.isfinite(self.ping) and self.ping > 0):
            raise ValueError(f"ping must be a positive number of seconds: {self.ping!r}")
        for name in (
            "max_body",
            "max_ws_message",
            "max_header",
            "max_connections",
            "max_buffer",
            "max_service_calls",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.reclaim_after is not None and self.reclaim_after < 1:
            raise ValueError("reclaim_after must be None or at least 1")
        per_address = self.max_connections_per_address
        if per_address is not None and per_address < 1:
            raise ValueError("max_connections_per_address must be None or at least 1")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together: give both, or neither")
        for name in ("header_timeout", "body_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of ``certfile`` and ``keyfile`` (read now); None without.

        The stdlib's defaults for a server; ALPN offers HTTP/1.1 only (a
        client that asks for h2 gets HTTP/1.1). Raises OSError for a file that
        cannot be read, ``ssl.SSLError`` for one that holds no usable
        certificate or key (an encrypted key among them).
        """
        if self.certfile is None or self.keyfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile, password=_no_password)
        context.set_alpn_protocols(["http/1.1"])
        return context


def _no_password() -> str:
    # Without this, OpenSSL would prompt on the terminal for the password of
    # an encrypted key; an empty one fails to decrypt it instead.
    return ""
