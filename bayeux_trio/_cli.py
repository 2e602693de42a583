"""The ``bayeux`` command line: ``serve``, and the client's ``publish`` and ``subscribe``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from bayeux_core import EngineConfig

from ._client_cli import add_client_commands, run_client_command
from ._config import ServerConfig
from ._extensions import load_extension
from ._server import BayeuxServer

__all__ = ["main"]

log = logging.getLogger("bayeux")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayeux", description="A Bayeux (Faye/CometD) push messaging server and client."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Serve Bayeux over long-polling, callback-polling, WebSocket and EventSource.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=9292,
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    serve.add_argument(
        "--mount", default="/faye", help="path of the Bayeux endpoint (default: %(default)s)"
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=25.0,
        help="seconds a /meta/connect is held (default: %(default)s)",
    )
    serve.add_argument(
        "--session-timeout",
        type=float,
        default=30.0,
        help="seconds a session lives without a connect (default: %(default)s)",
    )
    serve.add_argument(
        "--engine",
        default="memory",
        metavar="URL",
        help="where sessions live: memory (default), or redis://host:port/db to share "
        "them with every server on that Redis (docs/redis.md)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port with SO_REUSEPORT (needs --engine redis://...)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--ping",
        type=float,
        default=None,
        help="seconds between WebSocket pings (default: no pings)",
    )
    serve.add_argument(
        "--extension",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="load a server extension (repeatable), e.g. myapp.auth:ServerAuth",
    )
    serve.add_argument(
        "--static", type=Path, default=None, metavar="DIR", help="serve DIR's files at /"
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="accept only these origins (repeatable; default: any, as Faye)",
    )
    serve.add_argument(
        "--max-body",
        type=int,
        default=1024 * 1024,
        help="largest HTTP body in bytes (default: %(default)s)",
    )
    serve.add_argument(
        "--max-ws-message",
        type=int,
        default=1024 * 1024,
        help="largest WebSocket message in bytes (default: %(default)s)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=19_000,
        help="open connections at once (default: %(default)s)",
    )
    serve.add_argument(
        "--publish-rate",
        type=float,
        default=None,
        metavar="N",
        help="publishes per second per client, in bursts of up to 2N "
        "(default: unlimited; beyond it: 407::Publish rate limit exceeded)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging verbosity (default: %(default)s)",
    )
    add_client_commands(commands)
    return parser


def _config(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        mount=args.mount,
        engine=EngineConfig(
            timeout=args.timeout,
            session_timeout=args.session_timeout,
            publish_rate=args.publish_rate,
        ),
        ping=args.ping,
        static_dir=args.static,
        allowed_origins=frozenset(args.allow_origin) if args.allow_origin else None,
        max_body=args.max_body,
        max_ws_message=args.max_ws_message,
        max_connections=args.max_connections,
        reuse_port=args.reuse_port,
    )


async def _serve(server: BayeuxServer) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    await server.close()
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        return run_client_command(args, parser)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = _config(args)
        extensions = [load_extension(spec) for spec in args.extension]
    except ValueError as exc:
        parser.error(str(exc))
    bus = None
    if args.engine != "memory":
        if not args.engine.startswith(("redis://", "rediss://", "unix://")):
            parser.error(f"--engine must be memory or a redis:// URL, not {args.engine!r}")
        from .redis import RedisBus

        bus = RedisBus(args.engine)
    if args.workers != 1:
        from ._workers import run_workers

        if bus is None or args.workers < 1 or args.port == 0:
            parser.error("--workers N needs N >= 1, --engine redis://... and a fixed --port")
        return run_workers(args.workers, list(sys.argv[1:] if argv is None else argv))
    server = BayeuxServer(config, extensions=extensions, bus=bus)
    failed: BaseException | None = None
    try:
        trio.run(_serve, server)
    except* OSError as group:  # raised in _serve's nursery, so inside a group
        failed = group
    while isinstance(failed, BaseExceptionGroup):
        failed = failed.exceptions[0]
    if failed is not None:
        print(f"bayeux: cannot listen on {args.host}:{args.port}: {failed}", file=sys.stderr)
        return 1
    return 0
