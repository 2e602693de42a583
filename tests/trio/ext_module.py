"""A server extension loaded by name in the CLI tests (``--extension``)."""

from __future__ import annotations

from bayeux_core import Extension, Message, MessageContext

TOKEN = "let-me-in"


class Auth(Extension):
    """Refuses subscriptions whose ``ext.token`` is not :data:`TOKEN`."""

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/subscribe":
            ext = message.get("ext")
            token = ext.get("token") if isinstance(ext, dict) else None
            if token != TOKEN:
                message["error"] = "403::Invalid token"
        return message


#: not an extension: loading it must fail with a clear message
NOT_AN_EXTENSION = 42


def broken_factory() -> object:
    """A factory that returns something that is not an extension."""
    return "nope"


class NeedsArguments(Extension):
    """An extension class that cannot be built from the command line."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
