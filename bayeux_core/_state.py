"""Every session state transition, in one table.

A message addresses a session through its ``clientId``; the state of that
session (``NONE`` when there is no such session) and the kind of message pick
one row of :data:`TRANSITIONS`: what the engine does and the state the session
is in afterwards. Every (state, kind) pair has a row, so no combination is left
to chance; ``tests/core/test_state.py`` walks them all and
``docs/make_state_diagram.py`` draws the diagram in ``docs/protocol.md`` from
this table.

A handshake names no session: it creates a new one in ``HANDSHAKEN`` and
leaves the session its message may name as it was.
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "MessageKind", "Outcome", "SessionState"]


class SessionState(enum.Enum):
    #: No session has this clientId (never made, disconnected or expired).
    NONE = "none"
    #: Handshake done, no ``/meta/connect`` yet.
    HANDSHAKEN = "handshaken"
    #: At least one ``/meta/connect`` seen.
    CONNECTED = "connected"


class MessageKind(enum.Enum):
    """What a message is, by its channel (:func:`~bayeux_core.message_kind`)."""

    # Members are singletons: hash them by identity, not by name through
    # Enum.__hash__ (a Python call), as they are looked up once per message.
    __hash__ = object.__hash__

    HANDSHAKE = "/meta/handshake"
    CONNECT = "/meta/connect"
    SUBSCRIBE = "/meta/subscribe"
    UNSUBSCRIBE = "/meta/unsubscribe"
    DISCONNECT = "/meta/disconnect"
    #: Any other ``/meta/...`` channel, ``/meta/subscribe/x`` included.
    OTHER_META = "/meta/*"
    #: A publish to ``/service/...``: for the server, never broadcast.
    SERVICE = "/service/**"
    #: A publish to any other channel.
    PUBLISH = "/**"
    #: Not a message: the session's deadline passed with no connect held.
    EXPIRE = "(timer)"


class Outcome(enum.Enum):
    HANDSHAKE = "create a session"
    CONNECT_FIRST = "answer at once"
    CONNECT = "hold until a message or the timeout"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    DISCONNECT = "end the session"
    PUBLISH = "route to subscribers"
    SERVICE = "hand to the server"
    UNKNOWN_CLIENT = "401 Unknown client"
    FORBIDDEN = "403 Forbidden channel"
    EXPIRE = "expire the session"
    IGNORE = "nothing"


_S = SessionState
_K = MessageKind
_O = Outcome

TRANSITIONS: dict[tuple[SessionState, MessageKind], tuple[Outcome, SessionState]] = {
    # No session: only handshakes and anonymous publishes (Faye allows HTTP
    # backends to publish without a session) do anything.
    (_S.NONE, _K.HANDSHAKE): (_O.HANDSHAKE, _S.NONE),
    (_S.NONE, _K.CONNECT): (_O.UNKNOWN_CLIENT, _S.NONE),
    (_S.NONE, _K.SUBSCRIBE): (_O.UNKNOWN_CLIENT, _S.NONE),
    (_S.NONE, _K.UNSUBSCRIBE): (_O.UNKNOWN_CLIENT, _S.NONE),
    (_S.NONE, _K.DISCONNECT): (_O.UNKNOWN_CLIENT, _S.NONE),
    (_S.NONE, _K.OTHER_META): (_O.FORBIDDEN, _S.NONE),
    (_S.NONE, _K.SERVICE): (_O.SERVICE, _S.NONE),
    (_S.NONE, _K.PUBLISH): (_O.PUBLISH, _S.NONE),
    (_S.NONE, _K.EXPIRE): (_O.IGNORE, _S.NONE),
    # Handshaken: the first connect is answered at once (CometD does this so
    # that clients which do not send advice.timeout=0 are not stalled).
    (_S.HANDSHAKEN, _K.HANDSHAKE): (_O.HANDSHAKE, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.CONNECT): (_O.CONNECT_FIRST, _S.CONNECTED),
    (_S.HANDSHAKEN, _K.SUBSCRIBE): (_O.SUBSCRIBE, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.UNSUBSCRIBE): (_O.UNSUBSCRIBE, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.DISCONNECT): (_O.DISCONNECT, _S.NONE),
    (_S.HANDSHAKEN, _K.OTHER_META): (_O.FORBIDDEN, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.SERVICE): (_O.SERVICE, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.PUBLISH): (_O.PUBLISH, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.EXPIRE): (_O.EXPIRE, _S.NONE),
    # Connected: later connects are held.
    (_S.CONNECTED, _K.HANDSHAKE): (_O.HANDSHAKE, _S.CONNECTED),
    (_S.CONNECTED, _K.CONNECT): (_O.CONNECT, _S.CONNECTED),
    (_S.CONNECTED, _K.SUBSCRIBE): (_O.SUBSCRIBE, _S.CONNECTED),
    (_S.CONNECTED, _K.UNSUBSCRIBE): (_O.UNSUBSCRIBE, _S.CONNECTED),
    (_S.CONNECTED, _K.DISCONNECT): (_O.DISCONNECT, _S.NONE),
    (_S.CONNECTED, _K.OTHER_META): (_O.FORBIDDEN, _S.CONNECTED),
    (_S.CONNECTED, _K.SERVICE): (_O.SERVICE, _S.CONNECTED),
    (_S.CONNECTED, _K.PUBLISH): (_O.PUBLISH, _S.CONNECTED),
    (_S.CONNECTED, _K.EXPIRE): (_O.EXPIRE, _S.NONE),
}
