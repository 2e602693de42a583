"""``bayeux publish`` and ``bayeux subscribe``: the client from the shell.

Exit codes (both commands):

* 0: done (publish: the server acknowledged; subscribe: ``--count`` messages
  printed, the ``--timeout`` without ``--count`` ran out, or stdout was closed);
* 1: the server refused (the publish, a subscription, or the session);
* 2: bad usage (arguments, JSON that does not parse);
* 3: no acknowledgement within ``--timeout`` (publish); for subscribe, fewer
  than ``--count`` messages within it, or a ``--timeout`` that ran out before
  the server acknowledged the subscriptions or while it could not be reached;
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from typing import Any

import orjson
import trio

from bayeux_core import (
    Extension,
    Message,
    MessageContext,
    MessageReceived,
    PublishError,
    SessionEnded,
    SubscribeFailed,
    is_meta,
    is_valid_name,
    is_valid_pattern,
)
from bayeux_trio.client import TRANSPORTS, SubscribeError, open_client, publish_sync

__all__ = ["add_client_commands", "run_client_command"]

log = logging.getLogger("bayeux.client")

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130


class AddExt(Extension):
    """Adds fixed fields to the ``ext`` of every message the client sends."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        message["ext"] = {**(ext if isinstance(ext, dict) else {}), **self.fields}
        return message


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="the Bayeux endpoint, e.g. http://host/faye")
    parser.add_argument(
        "--ext",
        metavar="JSON",
        help="a JSON object added to the ext of every message sent (an auth token, say)",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra HTTP header (repeatable)",
    )
    parser.add_argument(
        "--cookie",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a cookie to send (repeatable)",
    )
    parser.add_argument(
        "--transport",
        action="append",
        choices=TRANSPORTS,
        default=None,
        help="use only these transports, in this order (repeatable; default: websocket, "
        "then long-polling)",
    )
    parser.add_argument(
        "--disable", action="append", choices=TRANSPORTS, default=[], help="do not use a transport"
    )
    parser.add_argument(
        "--cafile", metavar="PATH", help="trust the CA certificates in PATH (PEM) for https/wss"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="logging verbosity on stderr (default: %(default)s)",
    )


def add_client_commands(commands: Any) -> None:
    """Add ``publish`` and ``subscribe`` to the ``bayeux`` command's subparsers."""
    publish = commands.add_parser(
        "publish",
        help="publish one message",
        description="Publish one message and wait for the server's acknowledgement. "
        "Exit status: 0 acknowledged, 1 refused, 2 bad usage, 3 timed out.",
    )
    _add_common(publish)
    publish.add_argument("channel", metavar="CHANNEL", help="the channel, e.g. /notifications")
    publish.add_argument("data", metavar="JSON", help="the message: any JSON value, or - for stdin")
    publish.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the acknowledgement (default: %(default)s)",
    )
    subscribe = commands.add_parser(
        "subscribe",
        help="print the messages of channels",
        description='Subscribe and print each message as one JSON line: {"channel": ..., '
        '"data": ...}. Exit status: 0 done, 1 refused, 2 bad usage, 3 fewer than '
        "--count messages within --timeout, or the server unreachable until it ran out.",
    )
    _add_common(subscribe)
    subscribe.add_argument(
        "channels", nargs="+", metavar="CHANNEL", help="channels or patterns (/chat/*, /chat/**)"
    )
    subscribe.add_argument(
        "--count", type=int, default=None, metavar="N", help="stop after N messages"
    )
    subscribe.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    subscribe.add_argument(
        "-q", "--quiet", action="store_true", help="do not report subscriptions on stderr"
    )


def _options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    extensions: list[Extension] = []
    if args.ext is not None:
        try:
            fields = orjson.loads(args.ext)
        except orjson.JSONDecodeError as exc:
            parser.error(f"--ext is not JSON: {exc}")
        if not isinstance(fields, dict):
            parser.error("--ext must be a JSON object")
        extensions.append(AddExt(fields))
    headers = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            parser.error(f"a header is NAME: VALUE, not {header!r}")
        headers.append((name.strip(), value.strip()))
    cookies = {}
    for cookie in args.cookie:
        name, sep, value = cookie.partition("=")
        if not sep or not name:
            parser.error(f"a cookie is NAME=VALUE, not {cookie!r}")
        cookies[name] = value
    ssl_context = None
    if args.cafile is not None:
        try:
            ssl_context = ssl.create_default_context(cafile=args.cafile)
        except (OSError, ssl.SSLError) as exc:
            parser.error(f"cannot read --cafile: {exc}")
    return {
        "transports": args.transport or TRANSPORTS,
        "disable": args.disable,
        "extensions": extensions,
        "headers": headers,
        "cookies": cookies,
        "ssl_context": ssl_context,
    }


def _error(message: str) -> None:
    print(f"bayeux: {message}", file=sys.stderr, flush=True)


def _channel_problem(channel: str, *, publish: bool) -> str | None:
    """Why ``channel`` cannot be published (or subscribed) to, or None if it can."""
    verb = "publish" if publish else "subscribe"
    if not is_valid_pattern(channel):
        return f"{channel!r} is not a channel name (one like /chat/room, or /chat/*)"
    if is_meta(channel):
        return f"cannot {verb} to {channel!r}: /meta channels belong to the protocol"
    if publish and not is_valid_name(channel):
        return f"cannot publish to {channel!r}: a pattern is for subscribing; name one channel"
    return None


def run_client_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    channels = [args.channel] if args.command == "publish" else args.channels
    for channel in channels:
        problem = _channel_problem(channel, publish=args.command == "publish")
        if problem is not None:
            _error(problem)
            return EXIT_USAGE
    options = _options(args, parser)
    try:
        if args.command == "publish":
            return _publish(args, parser, options)
        return _subscribe(args, parser, options)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ValueError as exc:  # a URL or an option the client refused
        parser.error(str(exc))


def _publish(
    args: argparse.Namespace, parser: argparse.ArgumentParser, options: dict[str, Any]
) -> int:
    text = sys.stdin.read() if args.data == "-" else args.data
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        parser.error(f"the message is not JSON: {exc}")
    try:
        publish_sync(args.url, args.channel, data, timeout=args.timeout, **options)
    except PublishError as exc:
        _error(f"the server refused the publish: {exc.error}")
        return EXIT_REFUSED
    except TimeoutError as exc:
        _error(str(exc))
        return EXIT_TIMEOUT
    return EXIT_OK


def _subscribe(
    args: argparse.Namespace, parser: argparse.ArgumentParser, options: dict[str, Any]
) -> int:
    if args.count is not None and args.count < 1:
        parser.error("--count must be at least 1")
    if args.timeout is not None and not args.timeout > 0:
        parser.error("--timeout must be a positive number of seconds")
    code: int = trio.run(_subscribe_async, args, options)
    return code


async def _subscribe_async(args: argparse.Namespace, options: dict[str, Any]) -> int:
    count: int | None = args.count
    printed = 0
    done = trio.Event()
    failure: str | None = None

    def on_message(event: MessageReceived) -> None:
        nonlocal printed
        if done.is_set():
            return
        line: dict[str, Any] = {"channel": event.channel, "data": event.data}
        if event.ext is not None:
            line["ext"] = event.ext
        try:
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`| head -1`): stop quietly, as cat does.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            done.set()
            return
        printed += 1
        if count is not None and printed >= count:
            done.set()

    def on_refused(event: SubscribeFailed) -> None:
        nonlocal failure
        failure = f"subscription to {event.channel} ended: {event.error}"
        done.set()

    def on_end(event: SessionEnded) -> None:
        nonlocal failure
        if event.error is not None:
            failure = f"the server ended the session: {event.error}"
            done.set()

    timed_out = unreachable = subscribed = False
    async with open_client(args.url, **options) as client:
        client.on(MessageReceived, on_message)
        client.on(SubscribeFailed, on_refused)
        client.on(SessionEnded, on_end)
        with trio.move_on_after(
            args.timeout if args.timeout is not None else float("inf")
        ) as scope:
            for channel in args.channels:
                try:
                    await client.subscribe(channel)
                except SubscribeError as exc:
                    _error(f"the server refused the subscription to {channel}: {exc.error}")
                    return EXIT_REFUSED
                if not args.quiet:
                    _error(f"subscribed to {channel}")
            subscribed = True
            await done.wait()
        timed_out = scope.cancelled_caught
        if timed_out and printed == 0 and client.last_error and not client.connected:
            unreachable = True
            _error(f"could not reach {args.url}: {client.last_error}")
    if failure is not None:
        _error(failure)
        return EXIT_REFUSED
    if unreachable:
        return EXIT_TIMEOUT
    if timed_out and not subscribed:
        _error(
            f"timed out after {args.timeout:g} s before the server acknowledged the subscriptions"
        )
        return EXIT_TIMEOUT
    if timed_out and count is not None and printed < count:
        _error(f"timed out after {args.timeout:g} s with {printed} of {count} messages")
        return EXIT_TIMEOUT
    return EXIT_OK
