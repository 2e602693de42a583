"""One accepted connection, from its first HTTP request to its WebSocket's end."""

from __future__ import annotations

import logging
import ssl

import trio

from ._context import ServerContext
from ._http import HttpConnection
from ._output import open_output
from ._websocket import accept_upgrade

__all__ = ["serve_connection"]

log = logging.getLogger("bayeux.server")


async def serve_connection(
    server: ServerContext,
    stream: trio.abc.Stream,
    address: str | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve HTTP requests on ``stream``, then the WebSocket if one was asked for.

    The connection owns ``stream`` from here: it is closed when this returns
    (a plaintext ``trio.SocketStream`` gives its socket up at once, see
    :func:`~._output.open_output`). With ``ssl_context`` the connection is
    TLS: its handshake must finish within the header timeout, else the
    connection is closed.
    """
    if ssl_context is not None:
        tls = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=True)
        del stream
        deadline = trio.current_time() + server.config.header_timeout
        if not await _handshake(tls, deadline):
            return
        stream = tls
    output = open_output(stream, max_buffer=server.config.max_buffer, count=server.hub.drains)
    del stream
    try:
        connection = HttpConnection(server, output)
        connection.address = address
        upgrade = await connection.serve()
        del connection  # an idle WebSocket should not pin the HTTP state
        if upgrade is None:
            return
        websocket = await accept_upgrade(server, upgrade, address)
        del upgrade
        if websocket is not None:
            await websocket()
    finally:
        await output.aclose()


async def _handshake(tls: trio.SSLStream[trio.abc.Stream], deadline: float) -> bool:
    """The TLS handshake, by ``deadline``; False (and closed) if it failed."""
    done = False
    try:
        with trio.move_on_at(deadline):
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                # Not TLS (plain HTTP on this port), or a failed negotiation.
                log.debug("TLS handshake failed: %s", exc.__cause__ or exc)
                return False
            done = True
        if not done:
            log.debug("closing a connection whose TLS handshake did not finish in time")
        return done
    finally:
        if not done:
            await trio.aclose_forcefully(tls)
