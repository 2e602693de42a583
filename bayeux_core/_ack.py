"""Acknowledged delivery, wire-compatible with CometD's ack extension.

A client asks for it with ``ext: {ack: true}`` on its handshake; the reply
says ``ext: {ack: true}`` when the server agrees (``false`` when it refuses).
From then on the session's deliveries travel only inside ``/meta/connect``
replies, whatever the transport, each reply's messages forming one *batch*
whose number the reply carries as ``ext.ack``. The client's next connect
carries ``ext.ack``: the number of the last batch it received. Until then the
server keeps the batch, and a connect that does not acknowledge it gets the
same messages again, under the same number, before anything newer: so
nothing is lost when a reply is lost with a dropped connection, order holds,
and a client that already saw a batch can recognise the copy by its number.

At most one batch is unacknowledged at a time: a client sends its next
connect only once the previous reply arrived (or was given up for lost).
"""

from __future__ import annotations

from typing import Any

from ._messages import Message
from ._store import Session

__all__ = ["acknowledge", "asks_for_ack", "set_reply_ack", "take_batch"]


def asks_for_ack(message: Message) -> bool:
    """True if a handshake carries ``ext: {ack: true}``."""
    ext = message.get("ext")
    return type(ext) is dict and ext.get("ack") is True


def set_reply_ack(reply: Message, value: Any) -> None:
    """Put ``ext.ack`` into a reply the engine built (keeping any other ext)."""
    ext = reply.get("ext")
    reply["ext"] = {**ext, "ack": value} if type(ext) is dict else {"ack": value}


def acknowledge(session: Session, message: Message) -> None:
    """Read a connect's ``ext.ack``; forget the batch it acknowledges.

    Anything but an int at least the pending batch's number acknowledges
    nothing, so the batch is sent again (CometD's client always sends a number).
    """
    if not session.unacked:
        return
    ext = message.get("ext")
    if type(ext) is not dict:
        return
    value = ext.get("ack")
    if type(value) is int and value >= session.batch:
        session.unacked = ()


def take_batch(session: Session, reply: Message) -> tuple[bytes, ...]:
    """The messages a connect reply carries, numbering the reply.

    The unacknowledged batch again if there is one (newer messages wait for
    the next connect), else the queue as a new batch. A reply without messages
    carries no number, so a client's count never moves back.
    """
    if not session.unacked:
        if not session.queue:
            return ()
        session.batch += 1
        session.unacked = tuple(session.queue)
        session.queue.clear()
    set_reply_ack(reply, session.batch)
    return session.unacked
