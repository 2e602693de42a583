"""bayeux_trio: a Bayeux (Faye/CometD) server and client on trio, h11 and wsproto."""

from ._client import TRANSPORTS as TRANSPORTS
from ._client import BayeuxClient as BayeuxClient
from ._client import BufferFull as BufferFull
from ._client import CallError as CallError
from ._client import ClientError as ClientError
from ._client import SessionEndedError as SessionEndedError
from ._client import SubscribeError as SubscribeError
from ._client import Subscription as Subscription
from ._client import open_client as open_client
from ._client import publish_sync as publish_sync
from ._config import ServerConfig as ServerConfig
from ._extensions import AsyncExtension as AsyncExtension
from ._extensions import load_extension as load_extension
from ._local import LocalClient as LocalClient
from ._local import PublishError as PublishError
from ._server import BayeuxServer as BayeuxServer
from ._services import ServiceContext as ServiceContext
from ._services import ServiceError as ServiceError

__all__ = (
    "TRANSPORTS",
    "AsyncExtension",
    "BayeuxClient",
    "BayeuxServer",
    "BufferFull",
    "CallError",
    "ClientError",
    "LocalClient",
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
