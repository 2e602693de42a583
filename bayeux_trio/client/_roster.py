"""Who is in a channel, as the client learns it from ``/presence<channel>``.

A server with presence on for a channel (``bayeux serve --presence
'/chat/**'``) tells a client subscribed to ``/presence/chat/room`` who is in
``/chat/room``: first one delivery ``{"members": [{"user", "info"}, ...]}``
(join order), then ``{"join": {"user", "info"}}`` and ``{"leave": {...}}`` as
users come and go. :class:`Roster` keeps the members from those deliveries;
:class:`~bayeux_trio.client.Presence` (in ``_client``) is its public face.

No I/O here: data in, changes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["PresenceEvent", "Roster"]


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A user joined or left a channel with presence.

    Attributes:
        kind: ``"join"`` (the user's first session subscribed to the channel)
            or ``"leave"`` (their last one left it).
        channel: the channel (``/chat/room``, not ``/presence/chat/room``).
        user: the user's id, as the server's extension set it on handshake
            (the session's clientId when none did).
        info: the public data the extension gave with it (a display name,
            say), or None.
    """

    kind: Literal["join", "leave"]
    channel: str
    user: str
    info: Any = None


class Roster:
    """The members of one channel, from the deliveries on its presence channel.

    ``members`` maps user -> info in join order. ``synced`` is True once a
    members list arrived: before that, joins and leaves are ignored (the list
    will include them). A later members list (the client subscribed again
    after a new handshake) replaces the members, and :meth:`apply` returns the
    difference as leaves and joins, so that whoever follows the events stays
    in step.
    """

    __slots__ = ("channel", "members", "synced")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.members: dict[str, Any] = {}
        self.synced = False

    def apply(self, data: Any) -> list[PresenceEvent] | None:
        """Take one delivery's data; the changes it made, in order.

        None when ``data`` is no presence delivery (it is ignored); an empty
        list when it changed nothing (a members list equal to what was known,
        a join of a member, a leave of someone who is not one).
        """
        if type(data) is not dict or len(data) != 1:
            return None
        ((kind, value),) = data.items()
        if kind == "members":
            if type(value) is not list:
                return None
            return self._replace(value)
        if kind not in ("join", "leave"):
            return None
        member = _member(value)
        if member is None:
            return None
        if not self.synced:
            return []
        user, info = member
        if kind == "join":
            if user in self.members:
                self.members[user] = info
                return []
            self.members[user] = info
            return [PresenceEvent("join", self.channel, user, info)]
        if user not in self.members:
            return []
        known = self.members.pop(user)
        return [PresenceEvent("leave", self.channel, user, known if info is None else info)]

    def _replace(self, listed: list[Any]) -> list[PresenceEvent]:
        members: dict[str, Any] = {}
        for entry in listed:
            member = _member(entry)
            if member is not None:
                members.setdefault(member[0], member[1])
        changes: list[PresenceEvent] = []
        if self.synced:
            old = self.members
            changes.extend(
                PresenceEvent("leave", self.channel, user, info)
                for user, info in old.items()
                if user not in members
            )
            changes.extend(
                PresenceEvent("join", self.channel, user, info)
                for user, info in members.items()
                if user not in old
            )
        self.members.clear()
        self.members.update(members)
        self.synced = True
        return changes


def _member(value: Any) -> tuple[str, Any] | None:
    """``(user, info)`` from ``{"user": ..., "info": ...}``; None if it is not one."""
    if type(value) is not dict:
        return None
    user = value.get("user")
    if type(user) is not str or not user:
        return None
    return user, value.get("info")
