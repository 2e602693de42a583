"""A server extension for the presence tests: the user from the handshake's ext.

Loaded in process by tests/core/test_presence.py, tests/core/test_presence_model.py
and tests/redis/test_presence.py, and by ``bayeux serve --extension
tests._support.presence:Names`` in the multi-process tests, as an
authentication extension would set the user from a token. It passes on
whatever the client sends (an empty or non-string user too), so that the
engine's own checks of ``context.user`` can be tested through it.
"""

from __future__ import annotations

from bayeux_core import Extension, Message, MessageContext


class Names(Extension):
    """``ext: {"user": ..., "info": ...}`` on the handshake names the session's user."""

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/handshake":
            ext = message.get("ext") or {}
            if "user" in ext:
                context.user = ext["user"]
                context.info = ext.get("info")
        return message
