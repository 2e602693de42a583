"""What kind of Bayeux message a message is, from its channel.

The engine, the network layers and their metrics all need this answer, and
they must agree on it: a message is a handshake, connect, subscribe,
unsubscribe or disconnect by its exact ``/meta/...`` channel; any other
channel under ``/meta`` is :attr:`MessageKind.OTHER_META`; a channel under
``/service`` is a service call; anything else is a publish. ``/meta`` and
``/service`` themselves count as under themselves (:func:`is_meta`,
:func:`is_service`). Whether a publish's channel is *valid* is the engine's
business, not this classification's.

Both functions run once per incoming message: a dictionary lookup for the
five meta channels, and one prefix test for every publish. (The same code is
in both, rather than one calling the other, for that reason; a property test
holds them to :func:`~bayeux_core.is_meta` and
:func:`~bayeux_core.is_service`.)
"""

from __future__ import annotations

from ._state import MessageKind

__all__ = [
    "HANDSHAKE_AND_SESSION_KINDS",
    "META_KINDS",
    "SESSION_KINDS",
    "channel_kind",
    "message_kind",
]

#: The five meta channels of the protocol, by name.
META_KINDS: dict[str, MessageKind] = {
    "/meta/handshake": MessageKind.HANDSHAKE,
    "/meta/connect": MessageKind.CONNECT,
    "/meta/subscribe": MessageKind.SUBSCRIBE,
    "/meta/unsubscribe": MessageKind.UNSUBSCRIBE,
    "/meta/disconnect": MessageKind.DISCONNECT,
}

#: Messages that act on an existing session, so must name it (``clientId``).
SESSION_KINDS = frozenset(
    {
        MessageKind.CONNECT,
        MessageKind.SUBSCRIBE,
        MessageKind.UNSUBSCRIBE,
        MessageKind.DISCONNECT,
    }
)
#: Messages that make a session or act on one.
HANDSHAKE_AND_SESSION_KINDS = frozenset({MessageKind.HANDSHAKE, *SESSION_KINDS})

#: Every channel that is neither a publish nor an unknown meta channel starts so.
_SPECIAL_PREFIXES = ("/meta", "/service")


def channel_kind(channel: str) -> MessageKind:
    """The kind of a message sent to ``channel``.

    ``/meta/connect`` is :attr:`MessageKind.CONNECT` (and so on for the other
    four meta channels); ``/meta/foo`` and ``/meta`` are
    :attr:`MessageKind.OTHER_META`; ``/service`` and below are
    :attr:`MessageKind.SERVICE`; any other string, even one that is not a
    valid channel name, is :attr:`MessageKind.PUBLISH`. Never
    :attr:`MessageKind.EXPIRE`, which is no message.
    """
    kind = META_KINDS.get(channel)
    if kind is not None:
        return kind
    if not channel.startswith(_SPECIAL_PREFIXES):
        return MessageKind.PUBLISH
    # is_meta() and is_service(), inline: this runs once per message.
    if channel.startswith("/meta/") or channel == "/meta":
        return MessageKind.OTHER_META
    if channel.startswith("/service/") or channel == "/service":
        return MessageKind.SERVICE
    return MessageKind.PUBLISH  # /metadata, /services, ...


def message_kind(message: object) -> MessageKind | None:
    """The kind of ``message``: :func:`channel_kind` of its channel.

    None when it is not a message at all: not a JSON object, or an object
    whose ``channel`` is missing or not a string. Any object is accepted, as
    a decoded batch may hold anything.
    """
    if type(message) is not dict:
        return None
    channel = message.get("channel")
    if type(channel) is not str:
        return None
    # channel_kind(), inline.
    kind = META_KINDS.get(channel)
    if kind is not None:
        return kind
    if not channel.startswith(_SPECIAL_PREFIXES):
        return MessageKind.PUBLISH
    if channel.startswith("/meta/") or channel == "/meta":
        return MessageKind.OTHER_META
    if channel.startswith("/service/") or channel == "/service":
        return MessageKind.SERVICE
    return MessageKind.PUBLISH
