"""The applications the ASGI tests serve, each in a server subprocess.

* ``app``: the chat example (``examples/asgi/app.py``) mounted in Starlette
  with Bayeux's lifespan, plus the interop tests' extensions;
* ``bare``: :class:`~bayeux_asgi.BayeuxASGI` as the whole application, its
  timer started by the ASGI lifespan protocol;
* ``lazy``: the example without the parent's lifespan, so the timer starts
  with the first request.

All of them hold a ``/meta/connect`` for ``TIMEOUT`` seconds and take bodies
and WebSocket messages (max_ws_message) up to ``MAX_BODY`` bytes.
"""

from __future__ import annotations

from starlette.applications import Starlette

from bayeux_asgi import BayeuxASGI, WireConfig
from bayeux_core import EngineConfig, Extension, HistoryPolicy
from examples.asgi.app import create_app
from tests.interop.auth_ext import ServerAuth, TransportProbe

__all__ = ["MAX_BODY", "TIMEOUT", "app", "bare", "lazy"]

TIMEOUT = 10.0
MAX_BODY = 64 * 1024


def _config() -> EngineConfig:
    return EngineConfig(timeout=TIMEOUT, history={"/chat/*": HistoryPolicy(100)})


_WIRE = WireConfig(mount="/faye", max_body=MAX_BODY, max_ws_message=MAX_BODY)


def _extensions() -> list[Extension]:
    return [ServerAuth(), TransportProbe()]


app = create_app(_config(), wire=_WIRE, extensions=_extensions())
bare = BayeuxASGI(_config(), wire=_WIRE, extensions=_extensions())
# The same routes without the parent's lifespan: Bayeux starts on the first request.
lazy = Starlette(routes=create_app(_config(), wire=_WIRE, extensions=_extensions()).routes)
