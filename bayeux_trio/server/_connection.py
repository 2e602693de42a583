"""One accepted socket, from its first HTTP request to its WebSocket's end."""

from __future__ import annotations

import trio

from ._context import ServerContext
from ._http import HttpConnection
from ._websocket import accept_upgrade

__all__ = ["serve_connection"]


async def serve_connection(
    server: ServerContext, stream: trio.SocketStream, address: str | None = None
) -> None:
    """Serve HTTP requests on ``stream``, then the WebSocket if one was asked for."""
    connection = HttpConnection(server, stream)
    connection.address = address
    upgrade = await connection.serve()
    del connection  # an idle WebSocket should not pin the HTTP state
    if upgrade is None:
        return
    websocket = await accept_upgrade(server, stream, upgrade, address)
    del upgrade
    if websocket is not None:
        await websocket()
