"""bayeux_asgi: the Bayeux engine as an ASGI 3 application.

Why it exists: to serve Bayeux (Faye and CometD clients) from inside an
ASGI application, next to its pages and APIs, under whatever ASGI server and
event loop it already runs (uvicorn, hypercorn, on asyncio or trio), rather
than as a separate ``bayeux serve`` process. It is the same
:class:`bayeux_core.Engine` and the same wire rules
(:mod:`bayeux_core.wire`) as the trio server, driven with anyio::

    from starlette.applications import Starlette
    from bayeux_asgi import BayeuxASGI

    bayeux = BayeuxASGI()
    # routes(): the mount, plus /faye itself, which a Mount alone misses
    app = Starlette(routes=bayeux.routes(), lifespan=bayeux.lifespan)

See ``docs/asgi.md`` for what it supports and what it leaves to the trio
server.
"""

from bayeux_core.wire import WireConfig

from ._app import BayeuxASGI
from ._driver import Driver

__all__ = ["BayeuxASGI", "Driver", "WireConfig"]
