"""A real application backend for the hook tests, served by hypercorn on trio.

The hook tests need an HTTP peer that behaves as a Rails or Django backend
would, and misbehaves on demand. :class:`Backend` is a raw ASGI application
whose answer per path the test sets (:func:`allow`, :func:`refuse`,
:func:`rewrite`, :func:`slow`, :func:`held`, :func:`garbage`); it records
every description it got and counts the calls in progress per path, so a
test can show the in-flight limit. :func:`running_backend` serves it on a
loopback port inside the test's task and shuts it down gracefully.

Every wait is bounded: a slow or held answer gives up after :data:`HOLD_LIMIT`
seconds, and stops as soon as the caller hangs up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from bayeux_trio.access import HookSettings
from tests._support.ports import HOST

__all__ = [
    "HOLD_LIMIT",
    "Answer",
    "Backend",
    "Call",
    "allow",
    "by_channel",
    "garbage",
    "held",
    "refuse",
    "rewrite",
    "running_backend",
    "slow",
]

#: the longest a slow or held answer waits (a test's own bound is shorter)
HOLD_LIMIT = 10.0


@dataclass(frozen=True)
class Answer:
    """What the backend does for one path: wait (``delay``, ``hold``), then answer."""

    status: int = 200
    body: bytes = b'{"allow": true}'
    content_type: bytes = b"application/json"
    delay: float = 0.0
    #: answer once this is set (bounded by HOLD_LIMIT)
    hold: trio.Event | None = None


def allow(**extra: Any) -> Answer:
    """``{"allow": true, **extra}``."""
    return Answer(body=orjson.dumps({"allow": True, **extra}))


def refuse(error: str) -> Answer:
    return Answer(body=orjson.dumps({"error": error}))


def rewrite(data: Any) -> Answer:
    return Answer(body=orjson.dumps({"allow": True, "data": data}))


def slow(seconds: float, then: Answer | None = None) -> Answer:
    """``then`` (allow by default), after ``seconds``."""
    return dataclasses.replace(then or allow(), delay=seconds)


def held(event: trio.Event, then: Answer | None = None) -> Answer:
    """``then`` (allow by default), once the test sets ``event``."""
    return dataclasses.replace(then or allow(), hold=event)


def garbage(body: bytes, *, status: int = 200, content_type: bytes = b"text/plain") -> Answer:
    return Answer(status=status, body=body, content_type=content_type)


#: what a path answers: always the same, or chosen by the description it got
Choice = Answer | Callable[[Any], Answer]


def by_channel(answers: Mapping[str, Answer], default: Answer | None = None) -> Choice:
    """The answer for the description's ``channel`` (``default``, allow, for others)."""
    fallback = default or allow()

    def choose(description: Any) -> Answer:
        channel = description.get("channel") if isinstance(description, dict) else None
        return answers.get(channel, fallback) if isinstance(channel, str) else fallback

    return choose


@dataclass(frozen=True)
class Call:
    """One call the backend got: its path, headers (lower-case names) and description."""

    path: str
    headers: dict[str, str]
    description: Any


@dataclass
class Backend:
    """The ASGI application; ``base`` is ``http://127.0.0.1:<port>`` once served."""

    base: str = ""
    answers: dict[str, Choice] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    #: calls in progress now, and the most at once, per path
    in_flight: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    def hook(self, path: str, answer: Choice, **settings: Any) -> HookSettings:
        """Answer ``answer`` at ``path``; the settings of a hook that calls it."""
        self.answers[path] = answer
        return HookSettings(url=f"{self.base}{path}", **settings)

    def calls_to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    def descriptions(self, path: str) -> list[Any]:
        return [call.description for call in self.calls_to(path)]

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            if event["type"] != "http.request":
                return  # the caller hung up
            body += event["body"]
            if not event["more_body"]:
                break
        path = scope["path"]
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        try:
            description: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            description = body
        self.calls.append(Call(path, headers, description))
        choice = self.answers.get(path, garbage(b"no such hook", status=404))
        answer = choice if isinstance(choice, Answer) else choice(description)
        self.in_flight[path] = self.in_flight.get(path, 0) + 1
        self.peak[path] = max(self.peak.get(path, 0), self.in_flight[path])
        try:
            async with trio.open_nursery() as nursery:
                # Stop waiting as soon as the caller gives up (its timeout).
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
                with trio.move_on_after(HOLD_LIMIT):
                    await trio.sleep(answer.delay)
                    if answer.hold is not None:
                        await answer.hold.wait()
                await send(
                    {
                        "type": "http.response.start",
                        "status": answer.status,
                        "headers": [
                            (b"content-type", answer.content_type),
                            (b"content-length", str(len(answer.body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": answer.body, "more_body": False})
                nursery.cancel_scope.cancel()
        finally:
            self.in_flight[path] -= 1


async def _cancel_on_disconnect(receive: ASGIReceiveCallable, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


@contextlib.asynccontextmanager
async def running_backend() -> AsyncIterator[Backend]:
    """Serve a :class:`Backend` on a free loopback port for the block; then shut it down."""
    backend = Backend()
    config = Config()
    config.bind = [f"{HOST}:0"]
    config.graceful_timeout = 1.0
    config.accesslog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(serve, backend, config, shutdown_trigger=stop.wait)
        )
        backend.base = binds[0]
        try:
            yield backend
        finally:
            stop.set()
