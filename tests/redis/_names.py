"""A server extension for the presence tests: the user from the handshake's ext.

Loaded in process by tests/redis/test_presence.py and by ``bayeux serve
--extension tests.redis._names:Names`` in the multi-process tests, as an
authentication extension would set the user from a token.
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
