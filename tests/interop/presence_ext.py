"""The server extension of the presence interop tests (tests/interop/test_faye_presence.py).

``bayeux serve --extension tests.interop.presence_ext:UserFromHandshake``: a
handshake's ``ext.user`` names the session's user (presence counts users, so
two tabs of one user are one member) and ``ext.name``, if any, becomes the
public ``info`` shown beside them, ``{"name": ...}``. A real server would take
the user from a verified token instead of believing the client.
"""

from __future__ import annotations

from bayeux_core import Extension, Message, MessageContext

__all__ = ["UserFromHandshake"]


class UserFromHandshake(Extension):
    """Sets ``context.user`` and ``context.info`` from the handshake's ``ext``."""

    outgoing_deliveries = False

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        if message.get("channel") == "/meta/handshake" and isinstance(ext, dict):
            user = ext.get("user")
            if isinstance(user, str) and user:
                context.user = user
                if isinstance(ext.get("name"), str):
                    context.info = {"name": ext["name"]}
        return message
