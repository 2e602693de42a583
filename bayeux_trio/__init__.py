"""bayeux_trio: a Bayeux (Faye/CometD) server and client on trio, h11 and wsproto.

The rooms (docs/architecture.md): ``server``, ``client``, ``ops``, ``redis``
and ``cli``. The names below are the public API.
"""

from .client import TRANSPORTS as TRANSPORTS
from .client import BayeuxClient as BayeuxClient
from .client import BufferFull as BufferFull
from .client import CallError as CallError
from .client import ClientError as ClientError
from .client import Presence as Presence
from .client import PresenceEvent as PresenceEvent
from .client import SessionEndedError as SessionEndedError
from .client import SubscribeError as SubscribeError
from .client import Subscription as Subscription
from .client import open_client as open_client
from .client import publish_sync as publish_sync
from .server import AsyncExtension as AsyncExtension
from .server import BayeuxServer as BayeuxServer
from .server import LocalClient as LocalClient
from .server import PublishError as PublishError
from .server import ServerConfig as ServerConfig
from .server import ServiceContext as ServiceContext
from .server import ServiceError as ServiceError
from .server import load_extension as load_extension

__all__ = (
    "TRANSPORTS",
    "AsyncExtension",
    "BayeuxClient",
    "BayeuxServer",
    "BufferFull",
    "CallError",
    "ClientError",
    "LocalClient",
    "Presence",
    "PresenceEvent",
    "PublishError",
    "ServerConfig",
    "ServiceContext",
    "ServiceError",
    "SessionEndedError",
    "SubscribeError",
    "Subscription",
    "load_extension",
    "open_client",
    "publish_sync",
)
