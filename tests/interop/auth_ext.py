"""Server extensions the interop tests load into a server subprocess.

``bayeux serve --extension tests.interop.auth_ext:ServerAuth`` (run from the
repository root, so that ``tests.interop`` is importable) installs
:class:`ServerAuth`, the usual Faye authentication recipe: a subscription to a
protected channel must carry ``ext.authToken`` matching the token registry,
else it is refused with ``Invalid subscription auth token``, which a Faye
client's subscribe promise rejects with.

:class:`TransportProbe` lets a test see from the server's side which transport
a client really used: it stamps ``ext.transport`` (``"websocket"`` or
``"http"``) on every successful ``/meta/connect`` reply.
"""

from __future__ import annotations

from bayeux_core import Extension, Message, MessageContext

__all__ = ["TOKENS", "WRONG_TOKEN_ERROR", "ServerAuth", "TransportProbe"]

#: The token registry: channel -> the token a subscriber must present.
TOKENS: dict[str, str] = {
    "/private/chat": "let-me-in",
    "/private/ops": "ops-token",
}

WRONG_TOKEN_ERROR = "Invalid subscription auth token"


class ServerAuth(Extension):
    """Refuses subscriptions to registry channels without the right token."""

    outgoing_deliveries = False

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.tokens = dict(TOKENS if tokens is None else tokens)

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") != "/meta/subscribe":
            return message
        subscription = message.get("subscription")
        patterns = subscription if isinstance(subscription, list) else [subscription]
        ext = message.get("ext")
        token = ext.get("authToken") if isinstance(ext, dict) else None
        for pattern in patterns:
            required = self.tokens.get(pattern) if isinstance(pattern, str) else None
            if required is not None and token != required:
                message["error"] = WRONG_TOKEN_ERROR
                break
        return message


class TransportProbe(Extension):
    """Reports in connect replies whether the connect came over a WebSocket.

    The trio driver passes the ``wire.HttpRequest`` as ``context.request`` for HTTP
    requests and ``None`` for WebSocket frames.
    """

    outgoing_deliveries = False

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/connect" and message.get("successful"):
            transport = "websocket" if context.request is None else "http"
            ext = message.get("ext")
            message["ext"] = {**(ext if isinstance(ext, dict) else {}), "transport": transport}
        return message
