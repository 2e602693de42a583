"""Service channels as request/reply: CometD's remote calls.

A client publishes to ``/service/<name>`` with a message ``id``; the handler
registered for that channel gets the data and returns the reply data, which
goes back to that client alone as ``{channel, id, successful: true, data}``.
A handler that raises :class:`ServiceError` fails the call with its error
string; any other exception fails it with ``500::Service failed`` (and is
logged: its text may hold what the caller must not see). Either way a failed
result is ``{channel, id, successful: false, error, data: null}``.

Handlers run in tasks of their own, one per call, so a slow (async) handler
holds back nothing else. The publish itself is acknowledged at once, as any
publish; the result follows as a separate message. At most ``max_calls``
calls run at once (``ServerConfig.max_service_calls``); a call past that
fails at once with ``503::Too many service calls`` and runs no handler.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bayeux_core import Event, LocalProtocolError, Published, is_pattern, is_service, is_valid_name

from ._hub import Hub

__all__ = ["MAX_SERVICE_CALLS", "ServiceContext", "ServiceError", "ServiceHandler", "Services"]

log = logging.getLogger("bayeux.server")

#: calls running at once, by default (``ServerConfig.max_service_calls``)
MAX_SERVICE_CALLS = 1000
TOO_MANY_CALLS = "503::Too many service calls"


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """Who called, besides the data.

    Attributes:
        client_id: the caller's session (a live one: the engine checked it).
        channel: the service channel called.
        ext: the call message's ``ext``, or None.
        message_id: the call's id (None: nobody waits for the result).
    """

    client_id: str
    channel: str
    ext: Any
    message_id: Any


#: ``handler(data, context)``, returning the reply data or an awaitable of it.
ServiceHandler = Callable[[Any, ServiceContext], Any]


class ServiceError(Exception):
    """Raised by a handler to fail the call with ``<code>::<message>``."""

    def __init__(self, message: str, *, code: int = 400) -> None:
        super().__init__(message)
        self.error = f"{code}::{message}"


class Services:
    """The handlers of a server's service channels (see :meth:`BayeuxServer.add_service`)."""

    def __init__(self, hub: Hub, *, max_calls: int = MAX_SERVICE_CALLS) -> None:
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        self._hub = hub
        self._handlers: dict[str, ServiceHandler] = {}
        #: calls that may run at once; past it a call fails with 503 at once
        self.max_calls = max_calls
        #: calls whose handler task has been started and has not ended
        self.in_flight = 0
        hub.add_listener(self._on_event)

    def add(self, channel: str, handler: ServiceHandler) -> None:
        if not is_service(channel) or not is_valid_name(channel) or is_pattern(channel):
            raise ValueError(f"{channel!r} is not a /service channel name")
        if channel in self._handlers:
            raise ValueError(f"{channel} already has a handler")
        self._handlers[channel] = handler

    def remove(self, channel: str) -> None:
        if self._handlers.pop(channel, None) is None:
            raise ValueError(f"{channel} has no handler")

    def _on_event(self, event: Event) -> None:
        if type(event) is not Published or event.client_id is None:
            return
        handler = self._handlers.get(event.channel)
        if handler is None:
            return
        if self.in_flight >= self.max_calls:
            log.warning(
                "service call to %s refused: %d calls in flight", event.channel, self.in_flight
            )
            if event.message_id is not None:
                # Inside the pass: the hub runs this answer once the pass ends.
                self._hub.answer_call(
                    event.client_id, event.channel, event.message_id, error=TOO_MANY_CALLS
                )
            return
        context = ServiceContext(event.client_id, event.channel, event.ext, event.message_id)

        async def run() -> None:
            try:
                await self._call(handler, event.data, context)
            finally:
                self.in_flight -= 1

        self._hub.start_soon(run)
        # Counted once started: start_soon raises when the hub is not running.
        self.in_flight += 1

    async def _call(self, handler: ServiceHandler, data: Any, context: ServiceContext) -> None:
        result: Any = None
        error: str | None = None
        try:
            result = handler(data, context)
            if inspect.isawaitable(result):
                result = await _await(result)
        except ServiceError as exc:
            error = exc.error
        except Exception:
            log.exception("service handler for %s failed", context.channel)
            error = "500::Service failed"
        if context.message_id is None:
            return
        hub = self._hub
        try:
            hub.answer_call(
                context.client_id,
                context.channel,
                context.message_id,
                data=None if error else result,
                error=error,
            )
        except LocalProtocolError:
            log.error("service handler for %s returned %r, not JSON", context.channel, result)
            hub.answer_call(
                context.client_id,
                context.channel,
                context.message_id,
                error="500::Service reply is not JSON",
            )


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
