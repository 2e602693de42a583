"""Shared pieces of the security suite: raw WebSocket frames, a bound client."""

from __future__ import annotations

import struct
from typing import Any

from bayeux_trio import BayeuxServer
from tests.trio.helpers import HANDSHAKE, WsClient, handshake

__all__ = ["still_serving", "ws_frame", "ws_session"]

_KEY = b"\x0f\x1e\x2d\x3c"


def ws_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    masked: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One client frame, built by hand so that it can break the rules.

    ``length`` overrides the declared payload length (the payload sent stays
    ``payload``).
    """
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload) if length is None else length
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes([first, mask_bit | size])
    elif size < 1 << 16:
        head = bytes([first, mask_bit | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    return head + _KEY + bytes(b ^ _KEY[i % 4] for i, b in enumerate(payload))


async def ws_session(port: int, *subscriptions: str) -> tuple[WsClient, str]:
    """A WebSocket client that has handshaken, subscribed and connected."""
    ws = await WsClient.connect(port)
    await ws.send_json([HANDSHAKE])
    (reply,) = await ws.receive_json()
    client_id: str = reply["clientId"]
    messages: list[dict[str, Any]] = [
        {"channel": "/meta/subscribe", "clientId": client_id, "subscription": s}
        for s in subscriptions
    ]
    messages.append(
        {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}
    )
    await ws.send_json(messages)
    answered = 0
    for _ in range(10):
        answered += len(await ws.receive_json())
        if answered >= len(subscriptions) + 1:
            break
    return ws, client_id


async def still_serving(server: BayeuxServer) -> None:
    """The server goes on answering other clients."""
    assert server.port is not None
    client_id = await handshake(server.port)
    assert server.engine.store.get(client_id) is not None
