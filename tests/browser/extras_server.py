"""A server for tests/browser/test_extras.py: service handlers and a terminal refusal.

Run as ``python tests/browser/extras_server.py <port> <static dir>`` (from the
repository root). It serves the harness pages and the endpoint /faye on
127.0.0.1, answers ``/service/echo`` and ``/service/fail``, and refuses for
good every handshake whose ``ext.token`` is ``"bad"``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import trio

from bayeux_core import EngineConfig, Extension, Message, MessageContext, refuse
from bayeux_trio import BayeuxServer, ServerConfig, ServiceContext, ServiceError


class TerminalAuth(Extension):
    outgoing_deliveries = False

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        if message.get("channel") == "/meta/handshake" and isinstance(ext, dict):
            if ext.get("token") == "bad":
                return refuse(message, "403::Bad token", final=True, interval=100)
        return message


def echo(data: Any, context: ServiceContext) -> Any:
    return {"echo": data}


def fail(data: Any, context: ServiceContext) -> Any:
    raise ServiceError("Nope")


async def main(port: int, static: Path) -> None:
    config = ServerConfig(
        host="127.0.0.1", port=port, static_dir=static, engine=EngineConfig(timeout=5)
    )
    server = BayeuxServer(config, extensions=[TerminalAuth()])
    server.add_service("/service/echo", echo)
    server.add_service("/service/fail", fail)
    await server.serve()


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), Path(sys.argv[2]))
