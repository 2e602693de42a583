"""Backend hooks: the application decides a handshake, subscribe or publish over HTTP.

Most teams that run a push server already have a backend (Rails, Django, Node,
Go) that knows who may do what (issue 17). A hook POSTs a JSON description of
the message to it and applies the answer: allow, refuse with the backend's
error (the client sees it), or, for a publish, replace the data.
docs/access.md documents the exchange for backend authors.

Each call is awaited in the task of the connection whose message it checks
(the server awaits an :class:`~bayeux_trio.server.AsyncExtension` per
message), so a slow backend holds back only the client it answers for. Per
hook, a semaphore bounds the calls in flight, and the hook's ``timeout``
covers waiting for a slot and the call together. A backend that is down,
slow or answers garbage triggers the hook's ``on_error`` policy and a warning
on the ``bayeux.access`` logger, at most one per hook per second.

httpx (the ``access`` extra) is imported only when hooks are built, so the
rest of access control works without it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import orjson
import trio

from bayeux_core import BodyError, Message, MessageKind, decode_body, message_kind
from bayeux_trio.server import AsyncExtension

from ._settings import HookSettings

if TYPE_CHECKING:
    import httpx

__all__ = ["BACKEND_REFUSED", "BACKEND_UNAVAILABLE", "BackendHooks"]

log = logging.getLogger("bayeux.access")

#: what a client sees when a hook whose policy is ``refuse`` got no usable answer
BACKEND_UNAVAILABLE: Final = "503::Backend unavailable"
#: what a client sees when the backend answers ``{"allow": false}`` without an error
BACKEND_REFUSED: Final = "403::Forbidden"
#: the longest error text a backend may give (a longer one is garbage)
MAX_ERROR = 1024
#: the largest answer read (a rewritten publish is at most a request body)
MAX_ANSWER = 1024 * 1024
#: how deep an answer may nest: the answer object is level 1, rewritten data 2
ANSWER_DEPTH = 64
#: at most one failure warning per hook per this many seconds
WARN_EVERY = 1.0

_KINDS = ("handshake", "subscribe", "publish")
_PUBLISHES = (MessageKind.PUBLISH, MessageKind.SERVICE)


class _Unusable(Exception):
    """No usable answer from the backend; the text says why, for the log."""


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What to do with a message: refuse it, replace its data, or neither."""

    error: str | None = None
    #: the new data in a 1-tuple (data may be null), or None to keep it
    rewrite: tuple[Any] | None = None


_PASS = _Verdict()


@dataclass(slots=True)
class _Hook:
    """One configured hook and its running state."""

    kind: str
    settings: HookSettings
    #: the URL as logs show it: no userinfo, query or fragment
    shown: str
    slots: trio.Semaphore
    #: when the last warning was logged (trio clock), and how many were held back since
    warned_at: float | None = None
    suppressed: int = 0


def _shown_url(url: str) -> str:
    """``https://user:pw@host/path?key=secret`` -> ``https://host/path``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


class BackendHooks(AsyncExtension):
    """Ask the application's backend before handshakes, subscribes and publishes.

    Args:
        hooks: :class:`HookSettings` by message kind: ``handshake``,
            ``subscribe``, ``publish`` (any of them; a kind without a hook is
            not checked).
        user_of: the user who sent a message, for the description (on a
            handshake, the user its connection token names), or None.
        transport: an httpx transport to use instead of the network (tests).

    Which messages: ``/meta/handshake``; ``/meta/subscribe`` (one call per
    channel when ``subscription`` is a list, in order; the first refusal
    refuses the message); and every publish, ``/service/...`` included: a
    message with ``data`` on any channel outside ``/meta``. Anything else, and
    a message that already carries an ``error``, passes with no call.

    The backend gets ``{"kind", "clientId", "user", "channel", "data"
    (publish only), "ext", "address"}`` and answers 200 with a JSON object:
    ``{}`` or ``{"allow": true}`` allows; ``{"error": "..."}`` refuses with
    that error (1 to 1024 characters); ``{"allow": false}`` refuses with
    ``403::Forbidden``; for a publish, ``{"data": ...}`` replaces the data.
    Other keys are ignored. Any other answer, no answer within the hook's
    ``timeout`` or no connection is a failure: the message is refused with
    ``503::Backend unavailable`` (``on_error="refuse"``) or allowed as it
    is (``on_error="allow"``).

    Proxy and certificate settings from the environment are not used: a hook
    goes to exactly the URL configured.
    """

    #: the description names the peer's address (the server passes ``address=``)
    wants_address = True

    def __init__(
        self,
        hooks: Mapping[str, HookSettings],
        *,
        user_of: Callable[[Message], str | None] = lambda message: None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:
            # A ValueError, as for the other settings: the CLI names the key.
            raise ValueError(
                f"hooks: need httpx ({exc}): install the access extra, "
                "pip install '.[access]' in a clone of bayeux-trio"
            ) from None

        self._hooks: dict[str, _Hook] = {}
        for kind, settings in hooks.items():
            if kind not in _KINDS:
                raise ValueError(
                    f"hooks: {kind!r} is not a hook; want handshake, subscribe or publish"
                )
            if not isinstance(settings, HookSettings):
                raise TypeError(f"hooks[{kind!r}]: want a HookSettings, not {settings!r}")
            try:
                host = httpx.URL(settings.url).host
            except httpx.InvalidURL as exc:
                raise ValueError(f"hooks.{kind}.url: {settings.url!r}: {exc}") from None
            if not host:
                raise ValueError(f"hooks.{kind}.url: {settings.url!r} names no host")
            self._hooks[kind] = _Hook(
                kind, settings, _shown_url(settings.url), trio.Semaphore(settings.max_in_flight)
            )
        self._user_of = user_of
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    def __repr__(self) -> str:
        hooks = ", ".join(f"{hook.kind}={hook.shown}" for hook in self._hooks.values())
        return f"<BackendHooks {hooks}>"

    async def incoming(
        self, message: Message, request: object, address: str | None = None
    ) -> Message | None:
        if "error" in message:
            return message
        kind = message_kind(message)
        if kind is MessageKind.HANDSHAKE:
            hook = self._hooks.get("handshake")
            channels: list[Any] = [None]
        elif kind is MessageKind.SUBSCRIBE:
            hook = self._hooks.get("subscribe")
            subscription = message.get("subscription")
            channels = subscription if type(subscription) is list else [subscription]
            if not all(type(channel) is str for channel in channels):
                return message  # the engine refuses it
        elif kind in _PUBLISHES and "data" in message:
            hook = self._hooks.get("publish")
            channels = [message["channel"]]
        else:
            return message
        if hook is None:
            return message
        client_id = message.get("clientId")
        described = {
            "kind": hook.kind,
            "clientId": client_id if type(client_id) is str else None,
            "user": self._user_of(message),
            "channel": None,
            "ext": message.get("ext"),
            "address": address,
        }
        if hook.kind == "publish":
            described["data"] = message["data"]
        for channel in channels:
            described["channel"] = channel
            verdict = await self._consult(hook, described)
            if verdict.error is not None:
                message["error"] = verdict.error
                return message
            if verdict.rewrite is not None:
                message["data"] = verdict.rewrite[0]
        return message

    async def aclose(self) -> None:
        """Close the HTTP client; later calls fail (and follow their hook's policy)."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------- one call

    async def _consult(self, hook: _Hook, described: dict[str, Any]) -> _Verdict:
        """The backend's verdict on one description, or the hook's failure policy."""
        import httpx

        request_id = secrets.token_hex(8)
        timeout = hook.settings.timeout
        slot = False
        try:
            body = orjson.dumps(described)
            # The timeout covers waiting for a slot and the call together.
            with trio.move_on_after(timeout):
                async with hook.slots:
                    slot = True
                    raw = await self._post(hook, body, request_id)
                    return _verdict(hook.kind, raw)
            if not slot:
                limit = hook.settings.max_in_flight
                reason = f"no free slot within {timeout:g}s ({limit} calls in flight)"
            else:
                reason = f"no answer within {timeout:g}s"
        except orjson.JSONEncodeError as exc:
            reason = f"the message cannot be sent as JSON ({exc})"
        except _Unusable as exc:
            reason = str(exc)
        except httpx.TimeoutException:
            reason = f"no answer within {timeout:g}s"
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._warn(hook, reason, request_id)
        return _Verdict(error=BACKEND_UNAVAILABLE) if hook.settings.on_error == "refuse" else _PASS

    async def _post(self, hook: _Hook, body: bytes, request_id: str) -> bytes:
        """POST ``body``; the answer's bytes if the status is 200 (else _Unusable)."""
        if self._closed:
            raise _Unusable("the hooks are closed")
        if self._client is None:
            import httpx

            total = sum(each.settings.max_in_flight for each in self._hooks.values())
            self._client = httpx.AsyncClient(
                transport=self._transport,
                limits=httpx.Limits(max_connections=total, max_keepalive_connections=total),
                follow_redirects=False,
                trust_env=False,
            )
        headers = {
            **dict(hook.settings.headers),
            "content-type": "application/json",
            "x-request-id": request_id,
        }
        async with self._client.stream(
            "POST", hook.settings.url, content=body, headers=headers, timeout=hook.settings.timeout
        ) as response:
            if response.status_code != 200:
                raise _Unusable(f"HTTP {response.status_code}")
            too_large = _Unusable(f"the answer is larger than {MAX_ANSWER} bytes")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_ANSWER:
                raise too_large
            # A body of unknown length is read to its end (within the timeout)
            # but kept only up to the limit: leaving httpx's stream early would
            # leave its async generators to the garbage collector.
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size <= MAX_ANSWER:
                    chunks.append(chunk)
            if size > MAX_ANSWER:
                raise too_large
        return b"".join(chunks)

    def _warn(self, hook: _Hook, reason: str, request_id: str) -> None:
        """One warning line per hook per WARN_EVERY seconds; the rest are counted."""
        now = trio.current_time()
        if hook.warned_at is not None and now - hook.warned_at < WARN_EVERY:
            hook.suppressed += 1
            return
        held = hook.suppressed
        hook.warned_at, hook.suppressed = now, 0
        outcome = (
            f"refused with {BACKEND_UNAVAILABLE}"
            if hook.settings.on_error == "refuse"
            else "allowed (on_error = allow)"
        )
        more = f" ({held} more failures since the last warning)" if held else ""
        log.warning(
            "%s hook %s failed: %s; the message was %s [request %s]%s",
            hook.kind,
            hook.shown,
            reason,
            outcome,
            request_id,
            more,
            extra={"hook": hook.kind, "url": hook.shown, "reason": reason, "suppressed": held},
        )


def _verdict(kind: str, raw: bytes) -> _Verdict:
    """Read a 200 answer's body; raise _Unusable if it is not a valid answer."""
    # decode_body also takes an array of objects as a batch: an answer is one object.
    if raw.lstrip(b" \t\r\n")[:1] != b"{":
        raise _Unusable("the answer is not a JSON object")
    decoded = decode_body(raw, max_bytes=MAX_ANSWER, max_depth=ANSWER_DEPTH)
    if isinstance(decoded, BodyError):
        raise _Unusable(f"the answer is not a JSON object ({decoded.detail})")
    answer = decoded[0]
    allow = answer.get("allow", True)
    if type(allow) is not bool:
        raise _Unusable(f"allow is {allow!r}, not true or false")
    if "data" in answer and kind != "publish":
        raise _Unusable(f"data in an answer to a {kind} (only a publish's data can be replaced)")
    if "error" in answer:
        error = answer["error"]
        if type(error) is not str or not 0 < len(error) <= MAX_ERROR:
            raise _Unusable(f"error is not a string of 1 to {MAX_ERROR} characters")
        if answer.get("allow") is True:
            raise _Unusable("the answer both allows and gives an error")
        return _Verdict(error=error)
    if not allow:
        return _Verdict(error=BACKEND_REFUSED)
    if "data" in answer:
        return _Verdict(rewrite=(answer["data"],))
    return _PASS
