"""bayeux_trio: a Bayeux (Faye/CometD) server on trio, h11 and wsproto."""

from ._config import ServerConfig as ServerConfig
from ._extensions import AsyncExtension as AsyncExtension
from ._extensions import load_extension as load_extension
from ._local import LocalClient as LocalClient
from ._local import PublishError as PublishError
from ._server import BayeuxServer as BayeuxServer

__all__ = (
    "AsyncExtension",
    "BayeuxServer",
    "LocalClient",
    "PublishError",
    "ServerConfig",
    "load_extension",
)
