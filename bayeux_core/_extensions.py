"""Server extensions: ordered hooks on every message in and out.

An extension is a subclass of :class:`Extension` that overrides ``incoming``,
``outgoing`` or both. The engine runs them in the order they were added, for
both directions, as Faye does.

``incoming`` sees each message a client sends, before the engine acts on it.
It may change the message and return it; set ``message["error"]`` to refuse
it (the engine replies ``successful: false`` with that error and does not act);
or return ``None`` to drop it without a reply.

``outgoing`` sees every reply, and every delivery to every recipient. It may
change the message, or return ``None`` to drop it for that recipient. Because
it runs per recipient, a publish that has an outgoing extension installed is
encoded once per recipient instead of once in all. An extension that only
cares about replies sets ``outgoing_deliveries = False`` and keeps the fast
path.

Hooks are synchronous and must not do I/O. A network layer that needs an
asynchronous check (a database look-up) runs it before handing the message to
the engine, and refuses it by setting ``error`` in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._messages import Message

__all__ = ["Extension", "MessageContext", "refuse"]


def refuse(message: Message, error: str, *, final: bool = False, interval: int = 0) -> Message:
    """Mark ``message`` refused with ``error``; return it (from ``incoming``).

    ``final`` makes a refused handshake (or connect) terminal: the reply
    advises ``{"reconnect": "none", "interval": interval}`` instead of
    ``reconnect: handshake``, and clients stop retrying (Faye's clients would
    otherwise handshake again forever, e.g. with credentials that will never
    work). ``interval`` is in ms. The engine reads ``message["advice"]`` only
    together with ``message["error"]``, so a client that sends one itself
    refuses only itself.
    """
    message["error"] = error
    if final:
        message["advice"] = {"reconnect": "none", "interval": interval}
    return message


@dataclass(slots=True)
class MessageContext:
    """What an extension knows besides the message.

    Attributes:
        now: the caller's clock, as passed to the engine.
        client_id: the sender (incoming) or the recipient (outgoing), if known.
        request: the opaque object the network layer passed with the input
            (for example the HTTP request headers), or ``None``.
        is_delivery: True when an outgoing message is a delivery to a
            subscriber rather than a reply.
        user: who the session is. In ``incoming`` for a ``/meta/handshake``,
            set it (a non-empty string of at most 256 characters, say the
            user id your auth token names) and the new session carries it;
            otherwise it is the sender's, None when none was set. Presence
            counts users, not sessions: two tabs of one user are one member,
            and a session without a user counts as a user of its own
            (its clientId). Setting it on other messages changes nothing.
        info: public data about the user (JSON: a display name, an avatar
            URL) that presence shows beside them to everyone in the channel;
            set it with ``user``, on handshake.
        access: private data the server keeps with the session for the
            extensions' own later checks (JSON: the channels a token allows,
            its expiry); set it on handshake like ``user``. Never sent to any
            client; a cluster carries it with the session.
    """

    now: float
    client_id: str | None = None
    request: object = None
    is_delivery: bool = False
    user: str | None = None
    info: Any = None
    access: Any = None


class Extension:
    """Base class with pass-through hooks; override what you need."""

    #: False: ``outgoing`` sees replies only, never deliveries to subscribers.
    outgoing_deliveries: bool = True

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        return message

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        return message

    @property
    def rewrites_outgoing(self) -> bool:
        """True if ``outgoing`` must see each delivery to each recipient.

        Deliveries take the shared, encode-once path only while no installed
        extension says so.
        """
        return self.outgoing_deliveries and type(self).outgoing is not Extension.outgoing
