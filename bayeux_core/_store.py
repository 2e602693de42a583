"""Where sessions and subscriptions live: the seam between protocol and state.

The engine makes every protocol decision; a :class:`SessionStore` only keeps
sessions, their subscriptions and queues, and answers "who is subscribed to
this channel". :class:`MemoryStore` keeps them in this process. A store shared
between processes (Redis) implements the same small interface with the same
meaning, and nothing in the engine changes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterator
from typing import Any, Protocol

from ._channels import expand
from ._state import SessionState

__all__ = ["Held", "MemoryStore", "Session", "SessionStore"]

#: channels whose expansion a MemoryStore keeps; past it the set starts over
_EXPANSIONS = 1024


class Held:
    """A ``/meta/connect`` waiting for messages or its timeout."""

    __slots__ = ("conn", "parts", "reply", "request")

    def __init__(
        self, conn: int, parts: list[bytes], reply: dict[str, Any], request: object
    ) -> None:
        self.conn = conn
        #: Replies to the other messages of the same HTTP request.
        self.parts = parts
        #: The connect reply, sent (through outgoing extensions) on release.
        self.reply = reply
        #: What the network layer passed with the request, for extensions.
        self.request = request


class Session:
    """One client's state. Owned by the engine; kept by a store."""

    __slots__ = (
        "access",
        "ack",
        "batch",
        "client_id",
        "deadline",
        "dirty",
        "dropped",
        "held",
        "info",
        "interval",
        "queue",
        "recent",
        "refilled",
        "state",
        "stream",
        "subscriptions",
        "token",
        "tokens",
        "unacked",
        "user",
    )

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.state = SessionState.HANDSHAKEN
        self.subscriptions: set[str] = set()
        #: Encoded deliveries waiting for a connect; shared bytes, never copied.
        self.queue: deque[bytes] = deque()
        #: The held connect, if any.
        self.held: Held | None = None
        #: The stream connection (WebSocket, EventSource) messages are pushed to.
        self.stream: int | None = None
        #: When the held connect times out, or (none held) the session expires.
        self.deadline = 0.0
        #: Bumped whenever ``deadline`` changes; stale timer entries don't match.
        self.token = 0
        #: Seconds advised between connects (longer for EventSource).
        self.interval = 0.0
        #: Queued for flushing at the end of the current batch.
        self.dirty = False
        #: Messages dropped by the overflow policy since the last report.
        self.dropped = 0
        #: Ids of this client's latest publishes, oldest first, to spot resends.
        self.recent: dict[str | int | float, None] = {}
        #: Publish rate limit: tokens left in the bucket, and when it was last
        #: refilled (engine time). A full bucket to begin with.
        self.tokens = math.inf
        self.refilled = -math.inf
        #: Acknowledged delivery (see ``_ack``): agreed at handshake; the
        #: number of the latest batch sent; its messages until acknowledged.
        self.ack = False
        self.batch = 0
        self.unacked: tuple[bytes, ...] = ()
        #: Who the session is, as an extension said on handshake
        #: (``MessageContext.user``); None: the clientId stands for the user.
        self.user: str | None = None
        #: Public data about the user for presence (a display name), or None.
        self.info: Any = None
        #: Private data for the extensions (``MessageContext.access``), or None.
        self.access: Any = None

    def __repr__(self) -> str:
        return f"<Session {self.client_id[:6]}... {self.state.value}>"


class SessionStore(Protocol):
    """The state the engine needs, and nothing else."""

    def add(self, session: Session) -> None:
        """Keep a new session (its client id is unused)."""

    def get(self, client_id: str) -> Session | None:
        """The session with this id, or None."""

    def remove(self, session: Session) -> None:
        """Forget a session and every subscription it had."""

    def subscribe(self, session: Session, pattern: str) -> bool:
        """Add a subscription; True if it is new."""

    def unsubscribe(self, session: Session, pattern: str) -> bool:
        """Drop a subscription; True if it existed."""

    def subscribers(self, channel: str) -> Collection[Session]:
        """Each session subscribed to a pattern matching ``channel``, once.

        The caller must not change subscriptions while it iterates the result.
        """

    def __len__(self) -> int:
        """How many sessions there are."""

    def __iter__(self) -> Iterator[Session]:
        """Every session."""


class MemoryStore:
    """The in-process store: two dicts."""

    __slots__ = ("_expansions", "_index", "_sessions")

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        #: pattern -> sessions subscribed to exactly that pattern
        self._index: dict[str, set[Session]] = {}
        #: channel -> expand(channel), for the channels published to lately
        self._expansions: dict[str, tuple[str, ...]] = {}

    def add(self, session: Session) -> None:
        self._sessions[session.client_id] = session

    def get(self, client_id: str) -> Session | None:
        return self._sessions.get(client_id)

    def remove(self, session: Session) -> None:
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]
        for pattern in session.subscriptions:
            self._drop(session, pattern)
        session.subscriptions = set()

    def subscribe(self, session: Session, pattern: str) -> bool:
        if pattern in session.subscriptions:
            return False
        session.subscriptions.add(pattern)
        self._index.setdefault(pattern, set()).add(session)
        return True

    def unsubscribe(self, session: Session, pattern: str) -> bool:
        if pattern not in session.subscriptions:
            return False
        session.subscriptions.discard(pattern)
        self._drop(session, pattern)
        return True

    def _drop(self, session: Session, pattern: str) -> None:
        members = self._index[pattern]
        members.discard(session)
        if not members:
            del self._index[pattern]

    def subscribers(self, channel: str) -> Collection[Session]:
        index = self._index
        patterns = self._expansions.get(channel)
        if patterns is None:
            patterns = tuple(expand(channel))
            if len(self._expansions) >= _EXPANSIONS:
                self._expansions.clear()  # many channels: start over rather than grow
            self._expansions[channel] = patterns
        found = [members for pattern in patterns if (members := index.get(pattern))]
        if not found:
            return ()
        if len(found) == 1:
            return found[0]
        return set().union(*found)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def patterns(self) -> Collection[str]:
        """Every pattern with at least one subscriber (for introspection)."""
        return self._index.keys()
