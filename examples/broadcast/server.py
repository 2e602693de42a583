"""The broadcast demo as one Python program: endpoint, page and publisher.

    python -m examples.broadcast.server            # from the repository root

It serves the page at http://localhost:9292/ and the Bayeux endpoint at
/faye (like ``bayeux serve --static examples/broadcast/public``), then
publishes every line typed on its standard input to ``/notifications`` with
``server.publish()``: the in-process way, for a Python application that
embeds the server. curl, ``bayeux publish`` and ``notify.py`` work against
it too.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from bayeux_trio import BayeuxServer, ServerConfig

__all__ = ["PUBLIC", "main", "publish_lines"]

PUBLIC = Path(__file__).with_name("public")
CHANNEL = "/notifications"


async def publish_lines(server: BayeuxServer) -> None:
    """Publish each line of standard input until it ends."""
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        if not line:
            return  # end of input: keep serving, stop reading
        text = line.strip()
        if text:
            level = "alert" if text.startswith("!") else "info"
            server.publish(CHANNEL, {"text": text.lstrip("!").strip(), "level": level})


async def serve(host: str, port: int) -> None:
    server = BayeuxServer(ServerConfig(host=host, port=port, static_dir=PUBLIC))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        page = f"http://{'localhost' if host == '127.0.0.1' else host}:{server.port}/"
        print(f"open {page}, then type a line to notify every page (!line for an alert)")
        sys.stdout.flush()
        nursery.start_soon(publish_lines, server)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The broadcast demo, publishing stdin lines.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9292)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: just stop
        trio.run(serve, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
