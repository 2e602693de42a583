"""Who is in a channel: members by user, from the sessions subscribed to it.

Presence is on for the channels that match the configured patterns
(``EngineConfig.presence``). A *user* is in such a channel while at least one
of their sessions is subscribed to the channel's own name (a wildcard
subscription does not count: it is a listener, not a member). The user is the
id an extension gave the session on handshake (``MessageContext.user``), or
the clientId when none was given, so two tabs of one user are one member.

Members and their changes reach clients on the channel ``/presence<channel>``
(``/chat/room`` -> ``/presence/chat/room``), which any Faye client can
subscribe to: first one delivery ``{"members": [...]}``, then ``{"join":
member}`` and ``{"leave": member}`` as users come and go, where a member is
``{"user": ..., "info": ...}``.

:class:`PresenceTracker` keeps two things, both plain dicts:

* the *local* sessions in each channel, by user (which of this engine's
  sessions hold a user in), so that only a user's first session joins and
  only their last one leaves;
* the *members* view per channel (user -> info), in join order. A lone
  engine changes it itself when a user joins or leaves. A node of a cluster
  cannot tell on its own whether a user joined the cluster (their other
  session may be on another node): there the shared backend decides, puts
  the join or leave on its log, and every node applies it to its view when
  it routes that entry (:meth:`PresenceTracker.apply`). Each node's view is
  then the cluster's, as of its position in the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ._channels import expand, is_meta, is_pattern, is_service, is_valid_name, is_valid_pattern
from ._errors import ErrorCode, error_string

__all__ = [
    "PRESENCE_PREFIX",
    "PresenceTracker",
    "can_have_presence",
    "check_presence_patterns",
    "presence_channel",
    "presence_delivery",
    "presence_probe",
    "presence_target",
    "probe_refusal",
]

_BAD_REQUEST = error_string(ErrorCode.BAD_REQUEST)
#: The root of every presence channel: ``/presence/chat/room`` tells of ``/chat/room``.
PRESENCE_PREFIX = "/presence"
_PREFIX_SLASH = PRESENCE_PREFIX + "/"


def presence_channel(channel: str) -> str:
    """The channel that tells who is in ``channel``: ``"/presence" + channel``."""
    return PRESENCE_PREFIX + channel


def presence_target(channel: object) -> str | None:
    """The channel a presence channel tells of (``/presence/a/b`` -> ``/a/b``).

    None when ``channel`` is not under ``/presence/``. The result may be a
    pattern or invalid: check it with the tracker before using it.
    """
    if type(channel) is not str or not channel.startswith(_PREFIX_SLASH):
        return None
    return channel[len(PRESENCE_PREFIX) :]


def presence_delivery(channel: str, kind: str, user: str, info: Any) -> dict[str, Any]:
    """The delivery telling that ``user`` joined or left ``channel``.

    ``kind`` is ``"join"`` or ``"leave"``; the delivery is on
    ``/presence<channel>`` with data ``{kind: {"user": user, "info": info}}``.
    A cluster's bus encodes it (orjson) to put it on its log.
    """
    return {"channel": PRESENCE_PREFIX + channel, "data": {kind: {"user": user, "info": info}}}


def presence_probe(message: object) -> dict[str, Any] | None:
    """What the access rules must allow for a subscribe to presence channels.

    For a ``/meta/subscribe`` naming one or more ``/presence/...`` channels: a
    copy of it (shallow) whose ``subscription`` names the channels they tell
    of instead (``/presence/chat/room`` -> ``/chat/room``), so that whoever
    may not subscribe to a channel may not watch who is in it either. Run the
    incoming extensions on it; if they refuse or drop it, refuse the message.
    None for any other message.
    """
    if type(message) is not dict or message.get("channel") != "/meta/subscribe":
        return None
    subscription = message.get("subscription")
    named = [subscription] if type(subscription) is str else subscription
    if type(named) is not list:
        return None
    targets = [t for t in map(presence_target, named) if t is not None]
    if not targets:
        return None
    probe = dict(message)
    probe["subscription"] = targets[0] if type(subscription) is str else targets
    return probe


def probe_refusal(probe: dict[str, Any], checked: dict[str, Any] | None) -> str | None:
    """The error that refuses a watch, from what the extensions made of its probe.

    ``probe`` is :func:`presence_probe`'s copy and ``checked`` what the
    incoming extensions returned for it: None (accepted) if they let it
    through; their error if they refused it (a non-string error as the
    engine answers one, ``400::Bad request``); ``403:<channels>:Forbidden
    channel`` if they dropped it.
    """
    if checked is None:
        named = probe["subscription"]
        return error_string(ErrorCode.CHANNEL_FORBIDDEN, [named] if type(named) is str else named)
    if "error" not in checked:
        return None
    error = checked["error"]
    return error if type(error) is str else _BAD_REQUEST


def can_have_presence(channel: object) -> bool:
    """True for a channel name a server may keep presence for.

    A concrete name (no wildcard), not under ``/meta``, ``/service`` or
    ``/presence``. Whether a server does is its configuration's business
    (``EngineConfig.presence``).
    """
    return (
        is_valid_name(channel)
        and not is_pattern(channel)
        and not is_meta(channel)
        and not is_service(channel)
        and not _under_presence(channel)
    )


def check_presence_patterns(patterns: object) -> tuple[str, ...]:
    """``patterns`` as a tuple of valid channel patterns, or ValueError.

    Each must be a valid name or pattern (``/chat/**``), and not under
    ``/meta``, ``/service`` or ``/presence`` itself.
    """
    if isinstance(patterns, str) or not isinstance(patterns, Iterable):
        raise ValueError(f"presence must be a sequence of channel patterns, not {patterns!r}")
    checked: list[str] = []
    for pattern in patterns:
        if not is_valid_pattern(pattern):
            raise ValueError(f"presence: {pattern!r} is not a channel name or pattern")
        if is_meta(pattern) or is_service(pattern) or _under_presence(pattern):
            raise ValueError(f"presence: {pattern!r} cannot have presence")
        if pattern not in checked:
            checked.append(pattern)
    return tuple(checked)


def _under_presence(pattern: str) -> bool:
    return pattern == PRESENCE_PREFIX or pattern.startswith(_PREFIX_SLASH)


class PresenceTracker:
    """The members of presence-enabled channels (see the module's docstring).

    Args:
        patterns: the channels with presence, checked by
            :func:`check_presence_patterns`. A presence channel never has
            presence itself, whatever the patterns (``/**`` included).
    """

    __slots__ = ("_enabled", "_members", "_patterns", "_sessions", "_watches")

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = frozenset(patterns)
        #: channel -> whether presence is on for it (names seen so far)
        self._enabled: dict[str, bool] = {}
        #: channel -> user -> this engine's session (a client id) or sessions
        #: (a set, from the second on) that hold the user in
        self._sessions: dict[str, dict[str, str | set[str]]] = {}
        #: channel -> user -> info: the members, in join order
        self._members: dict[str, dict[str, Any]] = {}
        #: subscriptions that receive joins and leaves (a presence channel,
        #: or ``/**``) -> how many sessions have each
        self._watches: dict[str, int] = {}

    def enabled(self, channel: str) -> bool:
        """True if ``channel`` is a channel name with presence.

        The answer for a name is remembered, up to 10,000 names.
        """
        known = self._enabled.get(channel)
        if known is not None:
            return known
        answer = can_have_presence(channel) and not self._patterns.isdisjoint(expand(channel))
        if len(self._enabled) >= 10_000:
            self._enabled.clear()
        self._enabled[channel] = answer
        return answer

    # --------------------------------------------------------------- watches

    def count_watch(self, pattern: str, delta: int) -> None:
        """A subscription that hears joins and leaves came or went: one to a
        presence channel, or to ``/**`` (patterns under ``/presence`` are
        refused, and ``/*`` matches one segment only)."""
        count = self._watches.get(pattern, 0) + delta
        if count > 0:
            self._watches[pattern] = count
        else:
            self._watches.pop(pattern, None)

    @property
    def watching(self) -> bool:
        """True if any subscription can hear joins and leaves."""
        return bool(self._watches)

    def watched(self, channel: str) -> bool:
        """True if anyone may receive what is published on presence ``channel``."""
        return channel in self._watches or "/**" in self._watches

    # ------------------------------------------------------- local sessions

    def enter(self, channel: str, user: str, client_id: str) -> bool:
        """A session of ``user`` is now in ``channel``; True if it is the
        user's first session here (their join, on a lone engine)."""
        users = self._sessions.setdefault(channel, {})
        sessions = users.get(user)
        if sessions is None:
            # Most users have one session: a plain string until a second
            # (a one-element set would cost ~200 bytes per member).
            users[user] = client_id
            return True
        if isinstance(sessions, str):
            if sessions != client_id:
                users[user] = {sessions, client_id}
        else:
            sessions.add(client_id)
        return False

    def exit(self, channel: str, user: str, client_id: str) -> bool:
        """A session of ``user`` left ``channel``; True if it was the user's
        last session here (their leave, on a lone engine)."""
        users = self._sessions.get(channel)
        sessions = users.get(user) if users is not None else None
        if users is None or sessions is None:
            return False
        if isinstance(sessions, str):
            if sessions != client_id:
                return False
        elif client_id in sessions:
            sessions.discard(client_id)
            if len(sessions) == 1:
                (users[user],) = sessions
            return False
        else:
            return False
        del users[user]
        if not users:
            del self._sessions[channel]
        return True

    def local_users(self, channel: str) -> int:
        """How many users this engine's own sessions hold in ``channel``."""
        return len(self._sessions.get(channel, ()))

    # --------------------------------------------------------------- members

    def join(self, channel: str, user: str, info: Any) -> bool:
        """Add a member; False if already one."""
        members = self._members.setdefault(channel, {})
        if user in members:
            return False
        members[user] = info
        return True

    def leave(self, channel: str, user: str) -> tuple[bool, Any]:
        """Remove a member: (True, their info), or (False, None) if not one."""
        members = self._members.get(channel)
        if members is None or user not in members:
            return False, None
        info = members.pop(user)
        if not members:
            del self._members[channel]
        return True, info

    def members(self, channel: str) -> list[dict[str, Any]]:
        """``[{"user": ..., "info": ...}, ...]`` in join order."""
        return [
            {"user": user, "info": info} for user, info in self._members.get(channel, {}).items()
        ]

    def counts(self) -> dict[str, int]:
        """Channel -> number of members, for every channel with one."""
        return {channel: len(members) for channel, members in self._members.items()}

    def apply(self, channel: str, payload: bytes) -> tuple[str, str, Any, bool] | None:
        """Apply a presence delivery routed from a cluster's log to the view.

        ``channel`` is the presence channel it was published on. Returns
        ``("join" | "leave", user, info, changed)``, where ``changed`` is
        False for a repeat (the view had it already), or None if ``payload``
        is no join or leave.
        """
        read = self._read(channel, payload)
        if read is None:
            return None
        target, kind, user, info = read
        if kind == "join":
            return "join", user, info, self.join(target, user, info)
        left, info = self.leave(target, user)
        return "leave", user, info, left

    @staticmethod
    def _read(channel: str, payload: bytes) -> tuple[str, str, str, Any] | None:
        """(channel told of, "join" | "leave", user, info) of a presence delivery."""
        target = presence_target(channel)
        if target is None:
            return None
        try:
            data = orjson.loads(payload).get("data")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        if type(data) is not dict or len(data) != 1:
            return None
        ((kind, member),) = data.items()
        if kind not in ("join", "leave") or type(member) is not dict:
            return None
        user = member.get("user")
        if type(user) is not str:
            return None
        return target, kind, user, member.get("info")

    def reset(self, members: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the whole view (a cluster node loading the backend's state)."""
        self._members = {channel: dict(users) for channel, users in members.items() if users}
