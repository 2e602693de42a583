"""The chat demo's server extension: who each page is, for presence.

The page sends the name its user typed in its handshake, ``ext: {"name":
"Alice"}``. This extension makes that the session's user for presence
(``context.user``: the name trimmed, its spaces collapsed, in lower case, so
that "Alice" and "alice " are one user) with ``{"name": "Alice"}`` as the
public info shown beside them. Two tabs with the same name are one member of
each room. A handshake without a usable name (none, not a string, empty, or
longer than 40 characters) makes a guest: the server counts the session as a
user of its own.

Once named, a session speaks under that name only: the ``name`` of what it
publishes to a room is set to its own.

A demo, not authentication: anyone can type any name. A real application
names the user from what its login gave the page (a token checked here, a
session cookie in ``context.request``).

It lives outside ``examples/chat/``, since ``--static`` serves every file of
that directory. Run it with the demo (``make run`` does, from the repository
root)::

    bayeux serve --static examples/chat --history '/chat/*=100' \\
        --presence '/chat/**' --extension examples.chat_presence:ChatNames
"""

from __future__ import annotations

from typing import Any

from bayeux_core import Extension, Message, MessageContext

__all__ = ["MAX_NAME", "ChatNames", "user_of"]

#: as the page's name field allows
MAX_NAME = 40


def user_of(name: object) -> str | None:
    """The user id for a typed name, or None if it is not a usable name."""
    if not isinstance(name, str):
        return None
    shown = " ".join(name.split())
    if not shown or len(shown) > MAX_NAME:
        return None
    return shown.lower()


class ChatNames(Extension):
    """Names each session's user on handshake from ``ext.name``."""

    # Only incoming messages are looked at: deliveries keep the fast path.
    outgoing_deliveries = False

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        channel = message.get("channel")
        if channel == "/meta/handshake":
            ext = message.get("ext")
            name = ext.get("name") if isinstance(ext, dict) else None
            user = user_of(name)
            if isinstance(name, str) and user is not None:
                context.user = user
                context.info = {"name": " ".join(name.split())}
        elif isinstance(channel, str) and channel.startswith("/chat/"):
            shown = _name(context.info)
            data = message.get("data")
            if shown is not None and isinstance(data, dict):
                message["data"] = {**data, "name": shown}
        return message


def _name(info: Any) -> str | None:
    name = info.get("name") if isinstance(info, dict) else None
    return name if isinstance(name, str) else None
