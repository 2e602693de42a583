"""The server: the HTTP connection loop (h11), WebSocket (wsproto), EventSource,
the hub that drives the engine, output buffers, static files, services, the
in-process client and worker processes.

Connection handlers see a :class:`ServerContext`, never the whole
:class:`BayeuxServer`. Other rooms use the names here, nothing private.
"""

from bayeux_core import PublishError as PublishError

from ._config import ServerConfig as ServerConfig
from ._context import ServerContext as ServerContext
from ._extensions import AsyncExtension as AsyncExtension
from ._extensions import load_extension as load_extension
from ._hub import Hub as Hub
from ._local import LocalClient as LocalClient
from ._reclaim import tune_gc as tune_gc
from ._server import BayeuxServer as BayeuxServer
from ._server import Bus as Bus
from ._services import ServiceContext as ServiceContext
from ._services import ServiceError as ServiceError
from ._workers import run_workers as run_workers

__all__ = (
    "AsyncExtension",
    "BayeuxServer",
    "Bus",
    "Hub",
    "LocalClient",
    "PublishError",
    "ServerConfig",
    "ServerContext",
    "ServiceContext",
    "ServiceError",
    "load_extension",
    "run_workers",
    "tune_gc",
)
