"""Connection setup: the floor under trio (issue 18).

A trio server that does the least a Bayeux WebSocket server must: accept,
answer the upgrade, unmask frames, decode each JSON batch, and answer the
handshake (a fresh clientId) and subscribe with a JSON reply, holding the
connect. No engine, no timers, no queues. What it costs per connection set
up is the kernel's, trio's and the JSON's; our server's cost above it is our
own. ``--no-gc`` turns CPython's collector off, to show its share.

Run it, then point ``bench/js/loadgen.js``'s ``idle`` scenario at it, as
``bench/server_bench.py``'s scenario 5 does (docs/benchmarks.md, issue 18)::

    .venv/bin/python bench/ws_floor.py --serve 9416 [--no-gc] &
    NODE_PATH=<the faye node_modules> node bench/js/loadgen.js \\
      '{"scenario":"idle","steps":[2000,19000],"idleConcurrency":400,"port":9416,"path":"/faye","pid":PID}'
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import json
import os

import trio

__all__ = ["main", "serve_floor"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(payload: bytes) -> bytes:
    """An unmasked text frame (server to client)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload


def _unmask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    key = int.from_bytes(mask * (size // 4 + 1), "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(size + 4, "little")[:size]


async def _connection(stream: trio.SocketStream, sessions: dict[str, set[str]]) -> None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            return
        buffer += data
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    start = head.lower().index(b"sec-websocket-key:") + len(b"sec-websocket-key:")
    key = head[start : head.index(b"\r\n", start)].strip()
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    await stream.send_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    client_id = ""
    try:
        while True:
            while len(buffer) >= 2:
                size, offset = buffer[1] & 0x7F, 2
                if size == 126:
                    size, offset = int.from_bytes(buffer[2:4], "big"), 4
                elif size == 127:
                    size, offset = int.from_bytes(buffer[2:10], "big"), 10
                if len(buffer) < offset + 4 + size:
                    break
                opcode = buffer[0] & 0x0F
                payload = _unmask(
                    buffer[offset + 4 : offset + 4 + size], buffer[offset : offset + 4]
                )
                buffer = buffer[offset + 4 + size :]
                if opcode == 8:
                    return
                replies = []
                for message in json.loads(payload):
                    channel = message["channel"]
                    if channel == "/meta/handshake":
                        client_id = os.urandom(16).hex()
                        sessions[client_id] = set()
                        replies.append(
                            {"channel": channel, "successful": True, "clientId": client_id,
                             "version": "1.0", "supportedConnectionTypes": ["websocket"],
                             "id": message["id"]}
                        )  # fmt: skip
                    elif channel == "/meta/subscribe":
                        sessions[client_id].add(message["subscription"])
                        replies.append(
                            {"channel": channel, "successful": True, "clientId": client_id,
                             "subscription": message["subscription"], "id": message["id"]}
                        )  # fmt: skip
                if replies:
                    await stream.send_all(_frame(json.dumps(replies).encode()))
            data = await stream.receive_some(65536)
            if not data:
                return
            buffer += data
    finally:
        sessions.pop(client_id, None)


async def serve_floor(port: int) -> None:
    """Serve the floor on 127.0.0.1:``port`` until cancelled."""
    sessions: dict[str, set[str]] = {}

    async def handler(stream: trio.SocketStream) -> None:
        await _connection(stream, sessions)

    await trio.serve_tcp(handler, port, host="127.0.0.1", backlog=4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, required=True, metavar="PORT")
    parser.add_argument("--no-gc", action="store_true", help="turn the collector off")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    trio.run(serve_floor, args.serve)


if __name__ == "__main__":
    main()
