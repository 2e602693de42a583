"""The private chat's server extension: only users who follow each other talk.

The token registry, ``tokens.json`` next to this file, gives each user a
secret token and the list of users they follow. (A real application issues
the token when the user logs in and renders it into the page.) Two users talk
on the channel ``/private/<a>/<b>``, names in alphabetical order.

A subscription that could receive private messages, that is a channel under
``/private`` or the pattern ``/**``, is allowed only when it names exactly one
conversation ``/private/<a>/<b>``, ``ext.authToken`` is the token of ``a`` or
``b``, and ``a`` and ``b`` follow each other; or when it names a user's own
channel ``/private/<user>`` with that user's token (the page subscribes to it
when signing in, to check the token at once; nobody can publish there).
Anything else is refused with
``Invalid subscription auth token``, which the browser's subscribe promise
rejects with. Publishing to a conversation needs the same token; the token is
then removed from the message, so that it is not delivered to anyone, and
``data.from`` is set to the token's owner, so that nobody can speak for the
other side.

Run it with the demo's page (from the repository root)::

    bayeux serve --static examples/private_chat/public \\
        --extension examples.private_chat.auth:PrivateChatAuth
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

from bayeux_core import Extension, Message, MessageContext

__all__ = ["REFUSED", "TOKENS_FILE", "PrivateChatAuth", "conversation"]

TOKENS_FILE = Path(__file__).with_name("tokens.json")
REFUSED = "Invalid subscription auth token"


def conversation(first: str, second: str) -> str:
    """The channel on which two users talk."""
    a, b = sorted((first, second))
    return f"/private/{a}/{b}"


class PrivateChatAuth(Extension):
    """Guards ``/private/**`` with the token registry (read once, at start)."""

    # Only incoming messages are checked: deliveries keep the fast path.
    outgoing_deliveries = False

    def __init__(self, tokens_file: Path | str | None = None) -> None:
        path = Path(tokens_file) if tokens_file is not None else TOKENS_FILE
        registry: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        self.tokens: dict[str, str] = {}
        self.follows: dict[str, set[str]] = {}
        for user, entry in registry.items():
            self.tokens[user] = str(entry["token"])
            self.follows[user] = {str(name) for name in entry.get("follows", [])}

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        channel = message.get("channel")
        if channel == "/meta/subscribe":
            subscription = message.get("subscription")
            patterns = subscription if isinstance(subscription, list) else [subscription]
            token = _token(message)
            for pattern in patterns:
                if _reaches_private(pattern) and not (
                    self.allowed(pattern, token) or self.owner(pattern, token)
                ):
                    message["error"] = REFUSED
                    break
        elif isinstance(channel, str) and not channel.startswith("/meta/"):
            if _reaches_private(channel):
                sender = self.speaker(channel, _token(message))
                data = message.get("data")
                if sender is None:
                    message["error"] = REFUSED
                elif isinstance(data, dict):
                    message["data"] = {**data, "from": sender}
                _drop_token(message)
        return message

    def allowed(self, channel: object, token: object) -> bool:
        """True if ``token`` belongs to one of two mutual followers talking on ``channel``."""
        return self.speaker(channel, token) is not None

    def owner(self, channel: object, token: object) -> bool:
        """True if ``channel`` is ``/private/<user>`` and ``token`` is that user's."""
        if not isinstance(channel, str) or not isinstance(token, str):
            return False
        parts = channel.split("/")
        if len(parts) != 3 or parts[1] != "private" or parts[2] not in self.tokens:
            return False
        return hmac.compare_digest(token.encode(), self.tokens[parts[2]].encode())

    def speaker(self, channel: object, token: object) -> str | None:
        """Which of the two talking on ``channel`` owns ``token``, if they may talk."""
        if not isinstance(channel, str) or not isinstance(token, str):
            return None
        parts = channel.split("/")
        if len(parts) != 4 or parts[1] != "private":
            return None
        a, b = parts[2], parts[3]
        if a >= b or a not in self.tokens or b not in self.tokens:
            return None
        if not (b in self.follows[a] and a in self.follows[b]):
            return None
        given = token.encode()
        for user in (a, b):
            if hmac.compare_digest(given, self.tokens[user].encode()):
                return user
        return None


def _reaches_private(pattern: object) -> bool:
    """Could a subscription to ``pattern`` receive a message on ``/private/a/b``?"""
    if not isinstance(pattern, str):
        return False
    return pattern in {"/**", "/private"} or pattern.startswith("/private/")


def _token(message: Message) -> object:
    ext = message.get("ext")
    return ext.get("authToken") if isinstance(ext, dict) else None


def _drop_token(message: Message) -> None:
    ext = message.get("ext")
    if isinstance(ext, dict) and "authToken" in ext:
        rest = {key: value for key, value in ext.items() if key != "authToken"}
        if rest:
            message["ext"] = rest
        else:
            del message["ext"]
