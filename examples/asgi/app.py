"""The chat demo as an ASGI application: Starlette pages, Bayeux at ``/faye``.

Run it from the repository root with any ASGI server::

    .venv/bin/uvicorn examples.asgi.app:app --port 9292
    .venv/bin/hypercorn examples.asgi.app:app --bind 127.0.0.1:9292
    .venv/bin/hypercorn --worker-class trio examples.asgi.app:app --bind 127.0.0.1:9292

and open http://127.0.0.1:9292/ in two windows. The pages are
``examples/chat/`` unchanged: they load ``/faye/client.js`` and talk to
``/faye``, which the mounted :class:`~bayeux_asgi.BayeuxASGI` answers. Rooms
keep their last 100 messages and show who is in them, as with ``make run``.

Why a parent application and a mount: this is how Bayeux lives next to an
application's own routes. ``bayeux.routes()`` is ``Mount("/faye", bayeux)``
plus routes for the path ``/faye`` itself, which a Starlette mount does not
match and Faye's clients use. Starlette does not pass lifespan events to mounted
applications, so the parent's ``lifespan`` is Bayeux's (it would also start on
the first request without it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from bayeux_asgi import BayeuxASGI, WireConfig
from bayeux_core import EngineConfig, Extension, HistoryPolicy
from examples.chat_presence import ChatNames

__all__ = ["CHAT", "app", "create_app"]

CHAT = Path(__file__).resolve().parents[1] / "chat"


def create_app(
    engine_config: EngineConfig | None = None,
    *,
    wire: WireConfig | None = None,
    extensions: Iterable[Extension] = (),
) -> Starlette:
    """The chat pages at ``/`` and Bayeux at ``/faye`` (``wire.mount``)."""
    if engine_config is None:
        engine_config = EngineConfig(
            history={"/chat/*": HistoryPolicy(100)}, presence=("/chat/**",)
        )
        extensions = [ChatNames(), *extensions]
    if wire is None:
        wire = WireConfig(mount="/faye")
    bayeux = BayeuxASGI(engine_config, wire=wire, extensions=extensions)
    application = Starlette(
        routes=[
            # Mount("/faye", bayeux), and /faye itself (see BayeuxASGI.routes)
            *bayeux.routes(),
            Mount("/", app=StaticFiles(directory=CHAT, html=True)),
        ],
        lifespan=bayeux.lifespan,
    )
    application.state.bayeux = bayeux
    return application


app = create_app()
