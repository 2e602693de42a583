"""Operations: the admin API, Prometheus metrics, the health check, logging,
and the operator's console.

Each endpoint answers a :class:`bayeux_core.wire.HttpRequest` with a
:class:`bayeux_core.wire.HttpResponse` that the server's HTTP loop writes,
and reads the server through :class:`ServerView` alone.
"""

from ._admin import Operations as Operations
from ._admin import client_info as client_info
from ._console import TICKET_FIELD as TICKET_FIELD
from ._console import ConsoleGate as ConsoleGate
from ._console import ConsoleTickets as ConsoleTickets
from ._console import is_console as is_console
from ._health import health as health
from ._health import health_response as health_response
from ._logging import configure_logging as configure_logging
from ._stats import PEER as PEER
from ._stats import ClientLog as ClientLog
from ._view import BusView as BusView
from ._view import HubView as HubView
from ._view import ServerView as ServerView

__all__ = (
    "PEER",
    "TICKET_FIELD",
    "BusView",
    "ClientLog",
    "ConsoleGate",
    "ConsoleTickets",
    "HubView",
    "Operations",
    "ServerView",
    "client_info",
    "configure_logging",
    "health",
    "health_response",
    "is_console",
)
