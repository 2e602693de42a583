"""Engine configuration: one frozen value, checked when it is built."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._history import HistoryPolicy, check_policies
from ._presence import check_presence_patterns

__all__ = ["CONNECTION_TYPES", "EngineConfig", "OverflowPolicy"]

#: What the server offers in handshake replies, in Faye's order.
CONNECTION_TYPES: tuple[str, ...] = (
    "long-polling",
    "cross-origin-long-polling",
    "callback-polling",
    "websocket",
    "eventsource",
    "in-process",
)


#: max_json_depth's range: a Faye handshake is 3 deep; orjson stops at 1,024.
_MIN_DEPTH = 3
_MAX_DEPTH = 1024
#: session_expiry's floor when session_timeout follows timeout
_MIN_SESSION_EXPIRY = 10.0


class OverflowPolicy(enum.Enum):
    """What happens when a message arrives for a client whose queue is full."""

    #: Drop the oldest queued message to make room (the client misses it and a
    #: ``QueueOverflow`` event tells the application).
    DROP_OLDEST = "drop-oldest"
    #: End the session: the client's next connect gets ``401`` and
    #: ``reconnect: handshake``, so it knows it lost messages and starts over.
    DISCONNECT = "disconnect"


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Protocol timing and limits. Times are in seconds.

    Attributes:
        timeout: longest hold of a ``/meta/connect`` (sent as ``advice.timeout``).
        interval: pause a client makes between connects (``advice.interval``).
        session_timeout: how long a session lives with no connect held, counted
            from the end of its last connect plus the advised interval. None
            (the default): Faye's rule, twice ``timeout`` and at least 10 s
            (:attr:`session_expiry`), so a client is never dropped sooner than
            Faye would drop it.
        error_interval: ``advice.interval`` on error replies, so that a client
            told to re-handshake cannot spin (Faye issue #542).
        max_queue: messages queued per client before ``overflow`` applies.
        overflow: the :class:`OverflowPolicy`.
        max_batch: most messages accepted in one request body or frame; past
            it every message of the batch gets a ``400`` error reply. None (the
            default): no limit, as Faye (the body's size is the network
            layer's limit). Faye's clients send all they queued in one tick as
            one batch, and resend a batch that failed as a whole.
        max_subscriptions: channels one client may subscribe to.
        max_clients: sessions at once; a handshake beyond it is refused with
            ``503::Too many clients`` and a retry advice.
        connection_types: offered in handshake replies and checked on connect.
        publish_rate: publishes per second one session may make (a token
            bucket per session, refilled from the ``now`` the engine is given);
            a publish beyond it is refused with ``407::Publish rate limit
            exceeded``. None (the default): unlimited, as Faye. Publishes
            without a live session (a backend's ``curl``) are not counted:
            they have no session to charge, so an extension must limit them.
        publish_burst: the bucket's size, the publishes a session may make at
            once after a quiet spell; None: twice ``publish_rate`` (at least 1).
            Needs ``publish_rate``.
        max_clients_per_address: live sessions handshaken from one remote
            address (as the network layer passes it to :meth:`Engine.receive`);
            a handshake beyond it is refused with ``503::Too many clients from
            this address``. None (the default): no limit, because behind a
            reverse proxy or a carrier-grade NAT many users share one address.
        max_json_depth: how deep arrays and objects may nest in a body (the
            body's own array is level 1; a Faye handshake is 3 deep), for the
            network layer to pass to :func:`decode_body`; deeper bodies get
            HTTP 400. At most 1,024, orjson's own limit.
        js_safe_integers: refuse publishes whose ``data`` or ``ext`` holds an
            integer beyond JavaScript's exact range, +-(2**53 - 1), with
            ``400:data:Cannot encode message`` (browsers would round it
            silently). False (the default): integers up to 64 bits pass.
        history: channel names or patterns (``/chat/*``, ``/feed/**``) ->
            :class:`HistoryPolicy`: publishes to matching channels are kept
            and numbered so that a subscribe can recover what a client missed
            (``docs/delivery.md``). The most specific pattern wins. Empty (the
            default): no history, and no cost per publish.
        history_channels: most channels with a history stream at once; the
            least recently used stream is dropped beyond it.
        ack_extension: agree to acknowledged delivery (CometD's ack extension,
            ``ext: {ack: true}`` on the handshake) when a client asks for it.
            A node of a cluster refuses it whatever this says.
        presence: channel names or patterns (``/chat/**``) whose channels
            tell who is in them on ``/presence<channel>`` (``docs/presence.md``).
            Empty (the default): no presence, ``/presence/...`` is a channel
            like any other, and nothing costs more.
    """

    timeout: float = 25.0
    interval: float = 0.0
    session_timeout: float | None = None
    error_interval: float = 1.0
    max_queue: int = 10_000
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    max_batch: int | None = None
    max_subscriptions: int = 1_000
    max_clients: int = 1_000_000
    connection_types: tuple[str, ...] = CONNECTION_TYPES
    publish_rate: float | None = None
    publish_burst: float | None = None
    max_clients_per_address: int | None = None
    max_json_depth: int = 64
    js_safe_integers: bool = False
    history: Mapping[str, HistoryPolicy] = field(default_factory=dict)
    history_channels: int = 10_000
    ack_extension: bool = True
    presence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("timeout", "interval", "session_timeout", "error_interval"):
            value = getattr(self, name)
            if name == "session_timeout" and value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        for name in ("max_queue", "max_batch", "max_subscriptions", "max_clients"):
            value = getattr(self, name)
            if name == "max_batch" and value is None:
                continue
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be an int >= 1, not {value!r}")
        if not isinstance(self.overflow, OverflowPolicy):
            raise ValueError(f"overflow must be an OverflowPolicy, not {self.overflow!r}")
        if (
            type(self.connection_types) is not tuple
            or not self.connection_types
            or not all(isinstance(t, str) and t for t in self.connection_types)
        ):
            raise ValueError("connection_types must be a non-empty tuple of names")
        for name, least, bound in (("publish_rate", 0.0, "> 0"), ("publish_burst", 1.0, ">= 1")):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
                or value < least
            ):
                raise ValueError(f"{name} must be None or a finite number {bound}, not {value!r}")
        if self.publish_burst is not None and self.publish_rate is None:
            raise ValueError("publish_burst needs publish_rate")
        per_address = self.max_clients_per_address
        if per_address is not None and (type(per_address) is not int or per_address < 1):
            raise ValueError(
                f"max_clients_per_address must be None or an int >= 1, not {per_address!r}"
            )
        depth = self.max_json_depth
        if type(depth) is not int or not _MIN_DEPTH <= depth <= _MAX_DEPTH:
            raise ValueError(
                f"max_json_depth must be an int from {_MIN_DEPTH} to {_MAX_DEPTH}, not {depth!r}"
            )
        if type(self.js_safe_integers) is not bool:
            raise ValueError(f"js_safe_integers must be a bool, not {self.js_safe_integers!r}")
        if type(self.ack_extension) is not bool:
            raise ValueError(f"ack_extension must be a bool, not {self.ack_extension!r}")
        # Frozen, so that the config stays immutable and hashable.
        object.__setattr__(self, "history", check_policies(self.history))
        object.__setattr__(self, "presence", check_presence_patterns(self.presence))
        if type(self.history_channels) is not int or self.history_channels < 1:
            raise ValueError(f"history_channels must be an int >= 1, not {self.history_channels!r}")

    @property
    def session_expiry(self) -> float:
        """The effective ``session_timeout``: as given, or twice ``timeout``."""
        if self.session_timeout is None:
            # The floor keeps a server that never holds (timeout 0) usable.
            return max(2 * self.timeout, _MIN_SESSION_EXPIRY)
        return self.session_timeout

    @property
    def bucket_size(self) -> float:
        """The effective ``publish_burst`` (0 when publishes are unlimited)."""
        if self.publish_rate is None:
            return 0.0
        if self.publish_burst is not None:
            return self.publish_burst
        return max(1.0, 2 * self.publish_rate)
