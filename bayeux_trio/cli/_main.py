"""The ``bayeux`` command line: ``serve``, ``check-config``, and the client's ``publish``
and ``subscribe``."""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import signal
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import trio

from bayeux_core import EngineConfig, Extension, HistoryPolicy, __version__, is_valid_pattern
from bayeux_trio.access import AccessSettings
from bayeux_trio.ops import configure_logging
from bayeux_trio.server import (
    AsyncExtension,
    BayeuxServer,
    ServerConfig,
    load_extension,
    tune_gc,
)

from ._client_commands import add_client_commands, run_client_command
from ._config_file import ConfigError, ConfigFile, load_config_file

if TYPE_CHECKING:
    from bayeux_trio.redis import RedisBus

__all__ = ["main"]

log = logging.getLogger("bayeux")


def _parser() -> argparse.ArgumentParser:
    return _parsers()[0]


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``bayeux`` parser, and its ``serve`` subparser (which config files follow)."""
    parser = argparse.ArgumentParser(
        prog="bayeux", description="A Bayeux (Faye/CometD) push messaging server and client."
    )
    parser.add_argument("--version", action="version", version=f"bayeux {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Serve Bayeux over long-polling, callback-polling, WebSocket and EventSource.",
    )
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="read options and access control from this TOML file; options given on "
        "the command line win (docs/configuration.md)",
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
        default=None,
        metavar="SECONDS",
        help="seconds a session lives without a connect (default: twice --timeout, Faye's rule)",
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=None,
        metavar="N",
        help="most messages in one request body or WebSocket frame; past it each "
        "message of the batch gets a Bayeux error reply (400::Too many messages in "
        "one batch) (default: no limit)",
    )
    serve.add_argument(
        "--engine",
        default="memory",
        metavar="URL",
        help="where sessions live: memory (default), or redis://host:port/db to share "
        "them with every server on that Redis, redis+cluster://host:port for a "
        "Redis Cluster, or redis+sentinel://host:port[,host:port...]/mastername for "
        "the master Redis Sentinel names, followed across failovers (docs/redis.md)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port with SO_REUSEPORT (needs --engine redis://...)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--allocator",
        default="auto",
        choices=["auto", "jemalloc", "python"],
        help="memory allocator: jemalloc gives memory back to the system after bursts of "
        "clients (needs libjemalloc2); python is CPython's own; auto: jemalloc if "
        "installed (default: %(default)s)",
    )
    serve.add_argument(
        "--gc",
        default="serving",
        choices=["serving", "python"],
        help="garbage collection: serving freezes what start-up made and runs full "
        "collections less often while clients connect (docs/deployment.md, Memory); "
        "python keeps CPython's defaults (default: %(default)s)",
    )
    serve.add_argument(
        "--reclaim-after",
        type=int,
        default=500,
        metavar="N",
        help="once open connections fall by N, to half their peak or less, collect "
        "garbage and trim the heap; 0: never (default: %(default)s)",
    )
    serve.add_argument(
        "--health-path",
        default="/health",
        metavar="PATH",
        help="answer GET PATH with 200, or 503 while Redis is unreachable, for load "
        "balancers; '' for none (default: %(default)s)",
    )
    serve.add_argument(
        "--ping",
        type=float,
        default=None,
        help="seconds between WebSocket pings (default: no pings)",
    )
    serve.add_argument(
        "--history",
        action="append",
        default=[],
        type=_history_option,
        metavar="PATTERN=SIZE[:TTL]",
        help="keep the last SIZE messages (at most TTL seconds old) of the channels "
        "matching PATTERN, for clients to recover (repeatable; docs/delivery.md)",
    )
    serve.add_argument(
        "--presence",
        action="append",
        default=[],
        type=_presence_option,
        metavar="PATTERN",
        help="tell who is in the channels matching PATTERN on /presence<channel>: "
        "a members list, then joins and leaves (repeatable; docs/presence.md)",
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
        "--certfile",
        type=Path,
        default=None,
        metavar="FILE",
        help="serve HTTPS and WSS with this certificate chain (PEM); needs --keyfile",
    )
    serve.add_argument(
        "--keyfile",
        type=Path,
        default=None,
        metavar="FILE",
        help="the private key (PEM, not encrypted) of --certfile",
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
        "--max-connections-per-address",
        type=int,
        default=None,
        metavar="N",
        help="open connections from one IP address (default: unlimited; the TCP peer "
        "is counted, X-Forwarded-For is not read)",
    )
    serve.add_argument(
        "--max-service-calls",
        type=int,
        default=1000,
        metavar="N",
        help="service calls whose handlers run at once (default: %(default)s; "
        "beyond it: 503::Too many service calls)",
    )
    serve.add_argument(
        "--max-clients-per-address",
        type=int,
        default=None,
        metavar="N",
        help="live sessions handshaken from one IP address (default: unlimited; "
        "beyond it: 503::Too many clients from this address)",
    )
    serve.add_argument(
        "--max-json-depth",
        type=int,
        default=64,
        metavar="N",
        help="deepest nesting of arrays and objects in a body, 3 to 1024 "
        "(default: %(default)s; beyond it: HTTP 400)",
    )
    serve.add_argument(
        "--js-safe-integers",
        # --no-js-safe-integers turns off what a config file turned on
        action=argparse.BooleanOptionalAction,
        default=False,
        help="refuse publishes holding integers beyond +-(2**53 - 1), which browsers "
        "round (400:data:Cannot encode message)",
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
        "--grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, time to answer held connects and drain output "
        "before exiting; a second signal exits at once (default: %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging verbosity (default: %(default)s)",
    )
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (default: %(default)s)",
    )
    serve.add_argument(
        "--metrics-path",
        default=None,
        metavar="PATH",
        help="answer GET PATH with Prometheus metrics (needs the metrics extra; "
        "default: none, as it shows internals to whoever can reach the port)",
    )
    serve.add_argument(
        "--admin-path",
        default=None,
        metavar="PATH",
        help="serve the admin API under PATH (default: none); its bearer token comes "
        "from --admin-token-file or the BAYEUX_ADMIN_TOKEN environment variable",
    )
    serve.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="read the admin API's bearer token from FILE (never on the command line, "
        "where ps shows it)",
    )
    serve.add_argument(
        "--console-path",
        default=None,
        metavar="PATH",
        help="serve the operator's console (a web page over the admin API) under PATH "
        "(default: none); needs --admin-path",
    )
    check = commands.add_parser(
        "check-config",
        help="check a config file without starting the server",
        description="Check a `bayeux serve --config` file as the server would at start: "
        "exit 0 and a summary if it is good, else exit 2 and what is wrong.",
    )
    check.add_argument("file", type=Path, metavar="FILE", help="the TOML config file")
    add_client_commands(commands)
    return parser, serve


def _history_option(text: str) -> tuple[str, HistoryPolicy]:
    """``--history /chat/*=100:300`` -> ("/chat/*", HistoryPolicy(100, 300.0))."""
    pattern, _, bounds = text.partition("=")
    size, _, ttl = bounds.partition(":")
    if not is_valid_pattern(pattern):
        raise argparse.ArgumentTypeError(f"{text!r}: {pattern!r} is not a channel pattern")
    try:
        return pattern, HistoryPolicy(size=int(size), ttl=float(ttl) if ttl else None)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: want PATTERN=SIZE[:TTL] ({exc})") from None


def _presence_option(text: str) -> str:
    """``--presence /chat/**``: a channel name or pattern that may have presence."""
    try:
        EngineConfig(presence=(text,))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _config(args: argparse.Namespace, names: Mapping[str, str] | None = None) -> ServerConfig:
    """The server's config from the options (``names``: see :func:`_named`)."""
    return ServerConfig(
        host=args.host,
        port=args.port,
        mount=args.mount,
        engine=EngineConfig(
            timeout=args.timeout,
            session_timeout=args.session_timeout,
            max_batch=args.max_batch,
            publish_rate=args.publish_rate,
            max_clients_per_address=args.max_clients_per_address,
            max_json_depth=args.max_json_depth,
            js_safe_integers=args.js_safe_integers,
            history=dict(args.history),
            presence=tuple(args.presence),
        ),
        ping=args.ping,
        static_dir=args.static,
        allowed_origins=frozenset(args.allow_origin) if args.allow_origin else None,
        max_body=args.max_body,
        max_ws_message=args.max_ws_message,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        reuse_port=args.reuse_port,
        health_path=args.health_path or None,
        admin_path=args.admin_path or None,
        admin_token=_admin_token(args, names or {}) if args.admin_path else None,
        metrics_path=args.metrics_path or None,
        console_path=args.console_path or None,
        reclaim_after=args.reclaim_after or None,
        max_service_calls=args.max_service_calls,
        certfile=args.certfile,
        keyfile=args.keyfile,
    )


def _fail(message: str) -> NoReturn:
    """Refuse to start: one line on stderr, exit status 2 (bad usage)."""
    print(f"bayeux: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _extra_missing(option: str, module: str, extra: str) -> NoReturn:
    _fail(
        f"{option} needs {module}: install the {extra} extra: "
        f"pip install '.[{extra}]' in a clone of bayeux-trio"
    )


def _named(names: Mapping[str, str], dest: str) -> str:
    """How a message names an option: ``--static``, or ``bayeux.toml: static``.

    ``names`` maps the dests a config file set to the latter
    (:meth:`ConfigFile.merge`).
    """
    return names.get(dest) or "--" + dest.replace("_", "-")


def _blamed(names: Mapping[str, str], message: str) -> str | None:
    """``max_body must be ...`` -> ``bayeux.toml: max-body: max_body must be ...``.

    A ServerConfig/EngineConfig error starts with its field, which for most
    options is the option's dest; None if that option did not come from a file.
    """
    field = re.match(r"\w+", message)
    if field is None or field[0] not in names:
        return None
    return f"{names[field[0]]}: {message}"


def _check_serve_args(args: argparse.Namespace, names: Mapping[str, str] | None = None) -> None:
    """Refuse, in one line, what would otherwise fail later or silently."""
    names = names or {}
    if args.static is not None and not args.static.is_dir():
        _fail(f"{_named(names, 'static')} {args.static}: not a directory")
    _check_tls_files(args.certfile, args.keyfile, names)
    if args.metrics_path:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            _extra_missing(_named(names, "metrics_path"), "prometheus_client", "metrics")


def _check_tls_files(
    certfile: Path | None, keyfile: Path | None, names: Mapping[str, str] | None = None
) -> None:
    """--certfile and --keyfile: both or neither, readable, and a usable pair."""
    names = names or {}
    if certfile is None and keyfile is None:
        return
    cert_option, key_option = _named(names, "certfile"), _named(names, "keyfile")
    if certfile is None or keyfile is None:
        _fail(f"{cert_option} and {key_option} go together: give both, or neither")
    for option, path in ((cert_option, certfile), (key_option, keyfile)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            _fail(f"{option} {path}: cannot read it ({exc.strerror or exc})")
    try:
        ServerConfig(certfile=certfile, keyfile=keyfile).ssl_context()
    except (OSError, ssl.SSLError) as exc:
        _fail(
            f"{cert_option} {certfile} {key_option} {keyfile}: not a certificate chain and "
            f"its unencrypted private key, in PEM ({exc})"
        )


def _redis_bus(url: str, parser: argparse.ArgumentParser) -> RedisBus:
    schemes = ("redis://", "rediss://", "unix://", "redis+cluster://", "redis+sentinel://")
    if not url.startswith(schemes):
        # Not the whole URL, which may hold a password.
        parser.error(
            f"--engine must be memory or a redis://, redis+cluster:// or redis+sentinel:// "
            f"URL, not {url.partition('://')[0]!r}"
        )
    try:
        from bayeux_trio.redis import RedisBus
    except ImportError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "coredis":
            raise
        # Not the whole URL, which may hold a password.
        _extra_missing(f"--engine {url.partition(':')[0]}://...", "coredis", "redis")
    try:
        return RedisBus(url)
    except ValueError as exc:  # a bad redis+sentinel:// URL; says why, never its password
        parser.error(f"--engine: {exc}")


def _admin_token(args: argparse.Namespace, names: Mapping[str, str]) -> str:
    """The admin token, from --admin-token-file or BAYEUX_ADMIN_TOKEN."""
    if args.admin_token_file is not None:
        try:
            return str(args.admin_token_file.read_text()).strip()
        except OSError as exc:
            option = _named(names, "admin_token_file")
            path = args.admin_token_file
            raise ValueError(f"{option}: cannot read {path} ({exc.strerror or exc})") from None
    token = os.environ.get("BAYEUX_ADMIN_TOKEN", "").strip()
    if not token:
        raise ValueError("--admin-path needs --admin-token-file or BAYEUX_ADMIN_TOKEN")
    return token


async def _serve(server: BayeuxServer, grace: float, tune: bool = True) -> None:
    """Serve until SIGINT or SIGTERM, then close within ``grace`` seconds.

    A signal during startup (say, while Redis is unreachable) stops at once;
    so does a second signal during the grace period.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            started = False

            async def stop_on_signal() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not started or server.closing:
                        log.info("%s: stopping now", name)
                        nursery.cancel_scope.cancel()
                        return
                    log.info("%s: shutting down (grace %gs)", name, grace)
                    nursery.start_soon(close)

            async def close() -> None:
                await server.close(grace=grace)
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            await nursery.start(server.serve)
            started = True
            if tune:
                frozen = tune_gc()
                log.info("garbage collection: serving (%d start-up objects frozen)", frozen)
            else:
                log.info("garbage collection: python (CPython's defaults)")
            on_jemalloc = _jemalloc_loaded() and os.environ.get("PYTHONMALLOC") == "malloc"
            log.info("memory allocator: %s", "jemalloc" if on_jemalloc else "python")


#: where Debian, Ubuntu, Fedora and Alpine put jemalloc
_JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)


def find_jemalloc() -> str | None:
    """The path of libjemalloc.so.2, or None."""
    for path in _JEMALLOC_PATHS:
        if os.path.exists(path):
            return path
    return None


def _jemalloc_loaded() -> bool:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return "libjemalloc" in maps


def _use_jemalloc(argv: Sequence[str]) -> str | None:
    """Re-execute this command on jemalloc; returns why it cannot (or None if it runs on it).

    The allocator is chosen when the interpreter starts, so the process
    replaces itself (same PID, same arguments) with ``LD_PRELOAD`` naming
    jemalloc and ``PYTHONMALLOC=malloc``, which sends every Python object
    to it. Workers (``--workers``) inherit both.
    """
    if _jemalloc_loaded() and os.environ.get("PYTHONMALLOC") == "malloc":
        return None
    if os.environ.get("BAYEUX_ALLOCATOR_EXEC"):
        return "jemalloc was preloaded but is not in use (LD_PRELOAD refused?)"
    path = find_jemalloc()
    if path is None:
        return "--allocator jemalloc: libjemalloc.so.2 not found (apt-get install libjemalloc2)"
    preload = os.environ.get("LD_PRELOAD", "")
    env = dict(
        os.environ,
        LD_PRELOAD=f"{path} {preload}".strip(),
        PYTHONMALLOC="malloc",
        BAYEUX_ALLOCATOR_EXEC="1",
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "bayeux_trio", *argv], env)


def _given(argv: Sequence[str] | None) -> set[str]:
    """The dests of the serve options the command line gave: parsed again without defaults."""
    parser, serve = _parsers()
    for action in serve._actions:  # argparse has no public list of them
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _read_config(
    args: argparse.Namespace, serve: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[ConfigFile | None, dict[str, str]]:
    """Merge ``--config FILE`` into ``args`` (parsed from ``argv``); the options the
    command line gave win. Returns the file and ``{dest: "FILE: key"}`` for the
    options taken from it."""
    if args.config is None:
        return None, {}
    loaded = _load(args.config, serve)
    return loaded, loaded.merge(args, _given(argv))


def _load(path: Path, serve: argparse.ArgumentParser) -> ConfigFile:
    try:
        return load_config_file(path, serve)
    except ConfigError as exc:
        _fail(str(exc))


def _check_access(loaded: ConfigFile) -> None:
    """The access sections' files readable, and whatever bayeux_trio.access checks."""
    try:
        loaded.check_files()
    except ConfigError as exc:
        _fail(str(exc))
    if not loaded.access.active:
        return
    import bayeux_trio.access

    check: Callable[[AccessSettings], None] | None = getattr(bayeux_trio.access, "check", None)
    if check is not None:
        try:
            check(loaded.access)
        except ValueError as exc:
            _fail(loaded.explain(str(exc)))


_Extensions = list[Extension | AsyncExtension]


def _prepare(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    names: Mapping[str, str],
    error: Callable[[str], NoReturn],
) -> tuple[ServerConfig, _Extensions, RedisBus | None]:
    """Everything built from the options, refused with ``error`` (or ``_fail``, naming
    the file's key, for a value that came from a config file)."""
    try:
        if not (math.isfinite(args.grace) and args.grace >= 0):
            option = _named(names, "grace")
            raise ValueError(f"{option}: want a number of seconds >= 0, not {args.grace}")
        config = _config(args, names)
        if args.extension:
            # As `python -m` does (and so the jemalloc re-execution): an
            # extension may live in the directory the server is started from.
            cwd = os.getcwd()
            if cwd not in sys.path and "" not in sys.path:
                sys.path.insert(0, cwd)
        extensions = [load_extension(spec) for spec in args.extension]
    except ValueError as exc:
        message = str(exc)
        if any(name in message for name in names.values()):
            _fail(message)  # it names the file's key already
        blamed = _blamed(names, message)
        if blamed is not None:
            _fail(blamed)
        error(message)
    bus = None
    if args.engine != "memory":
        bus = _redis_bus(args.engine, parser)
    if args.workers != 1 and (bus is None or args.workers < 1 or args.port == 0):
        error("--workers N needs N >= 1, --engine redis://... and a fixed --port")
    return config, extensions, bus


def _check_config(
    path: Path, parser: argparse.ArgumentParser, serve: argparse.ArgumentParser
) -> int:
    """``bayeux check-config FILE``: what ``serve --config FILE`` checks before it listens."""
    loaded = _load(path, serve)
    args = parser.parse_args(["serve"])
    names = loaded.merge(args, given=())
    _check_serve_args(args, names)
    if args.allocator == "jemalloc" and find_jemalloc() is None:
        _fail(f"{_named(names, 'allocator')} jemalloc: libjemalloc.so.2 not found")
    _check_access(loaded)
    _prepare(args, parser, names, _fail)
    print(f"{path}: ok")
    print(loaded.summary(), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, serve = _parsers()
    args = parser.parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file, parser, serve)
    if args.command != "serve":
        return run_client_command(args, parser)
    # Workers (--workers) and the jemalloc re-execution run this argv again,
    # so they read the file too (and the options given here still win).
    loaded, names = _read_config(args, serve, argv)
    _check_serve_args(args, names)
    if loaded is not None:
        _check_access(loaded)
    # "auto" re-executes only a real command (argv None), never a caller's process.
    wanted = args.allocator == "jemalloc" or (
        args.allocator == "auto" and argv is None and find_jemalloc() is not None
    )
    problem = _use_jemalloc(list(sys.argv[1:] if argv is None else argv)) if wanted else None
    if problem is not None and args.allocator == "jemalloc":
        parser.error(problem)
    configure_logging(args.log_level, args.log_format)
    if problem is not None:
        log.warning("running on CPython's allocator: %s", problem)
    config, extensions, bus = _prepare(args, parser, names, parser.error)
    if args.workers != 1:
        from bayeux_trio.server import run_workers

        return run_workers(
            args.workers, list(sys.argv[1:] if argv is None else argv), grace=args.grace
        )
    server = BayeuxServer(config, extensions=extensions, bus=bus)
    if loaded is not None and loaded.access.active:
        from bayeux_trio.access import install

        try:
            install(server, loaded.access)
        except ValueError as exc:
            _fail(loaded.explain(str(exc)))
    failed: BaseException | None = None
    try:
        trio.run(_serve, server, args.grace, args.gc == "serving")
    except* OSError as group:  # raised in _serve's nursery, so inside a group
        failed = group
    while isinstance(failed, BaseExceptionGroup):
        failed = failed.exceptions[0]
    if failed is not None:
        print(f"bayeux: cannot listen on {args.host}:{args.port}: {failed}", file=sys.stderr)
        return 1
    return 0
