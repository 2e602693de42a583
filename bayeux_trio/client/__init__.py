"""The Python client: :class:`BayeuxClient` and its transports (long-polling,
WebSocket, EventSource), driving the core's :class:`bayeux_core.ClientSession`.

It imports nothing of the server.
"""

from ._client import TRANSPORTS as TRANSPORTS
from ._client import BayeuxClient as BayeuxClient
from ._client import BufferFull as BufferFull
from ._client import CallError as CallError
from ._client import ClientError as ClientError
from ._client import Presence as Presence
from ._client import PresenceEvent as PresenceEvent
from ._client import SessionEndedError as SessionEndedError
from ._client import SubscribeError as SubscribeError
from ._client import Subscription as Subscription
from ._client import open_client as open_client
from ._client import publish_sync as publish_sync

__all__ = (
    "TRANSPORTS",
    "BayeuxClient",
    "BufferFull",
    "CallError",
    "ClientError",
    "Presence",
    "PresenceEvent",
    "SessionEndedError",
    "SubscribeError",
    "Subscription",
    "open_client",
    "publish_sync",
)
