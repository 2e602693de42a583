"""Putting access control on a server: build the parts the settings name."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import trio

from bayeux_core import Extension, Message, MessageContext

from ._control import BACKEND_FIELD, AccessControl
from ._registry import TokenRegistry
from ._settings import AccessSettings

if TYPE_CHECKING:
    from bayeux_trio.server import BayeuxServer

    from ._hooks import BackendHooks

__all__ = ["check", "install", "make_control"]

#: a backend secret shorter than this is refused (it would be guessable)
MIN_SECRET = 16


def make_control(
    settings: AccessSettings,
    *,
    clock: Callable[[], float] = time.time,
    local_secret: str | None = None,
) -> AccessControl:
    """The extension the settings describe, its files read now.

    ``clock`` is the wall clock tokens expire by (tests move it).
    ``local_secret``: the backend secret when the settings name none (the
    server's own client proves itself with it). Raises ValueError naming the
    setting when a file is missing or bad.
    """
    jwt = None
    if settings.jwt is not None:
        try:
            from ._jwt import JwtVerifier
        except ImportError as exc:
            raise ValueError(
                f"jwt: needs PyJWT and cryptography ({exc}): install the access extra, "
                "pip install '.[access]' in a clone of bayeux-trio"
            ) from None
        jwt = JwtVerifier(settings.jwt, clock=clock)
    tokens = TokenRegistry(settings.tokens) if settings.tokens is not None else None
    secret = local_secret
    if settings.backend_secret_file is not None:
        try:
            secret = settings.backend_secret_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"backend_secret_file: cannot read it ({exc})") from None
        if len(secret) < MIN_SECRET:
            raise ValueError(f"backend_secret_file: want at least {MIN_SECRET} characters")
    return AccessControl(settings, jwt=jwt, tokens=tokens, backend_secret=secret, clock=clock)


def check(settings: AccessSettings) -> None:
    """Read and check every file the settings name, and build the hooks (their
    URLs parsed, httpx present), as :func:`install` would; nothing is started
    and no hook is called."""
    make_control(settings)
    if settings.hooks:
        from ._hooks import BackendHooks

        BackendHooks(settings.hooks)


def install(server: BayeuxServer, settings: AccessSettings) -> AccessControl:
    """Add access control to ``server``: the backend hooks (if any), the
    rules and identities, and the task that ends sessions whose token has
    expired. Call it before the server serves. Returns the extension."""
    # The server's own client (get_client()) is the application: it proves
    # it with the backend secret, or one made up for this process.
    control = make_control(settings, local_secret=secrets.token_urlsafe(32))
    assert control.backend_secret is not None
    server.local_extensions.append(_Credentials(control.backend_secret))
    if settings.hooks:
        from ._hooks import BackendHooks

        store = server.engine.store

        def user_of(message: Message) -> str | None:
            client_id = message.get("clientId")
            session = store.get(client_id) if type(client_id) is str else None
            if session is None:
                return control.user_of(message, None)
            return control.user_of(message, session.user, session.access)

        hooks = BackendHooks(settings.hooks, user_of=user_of)
        server.add_extension(hooks)
        server.add_task(partial(_close_when_done, hooks))
    server.add_extension(control)
    server.add_task(partial(control.watch, partial(server.hub.disconnect, rehandshake=True)))
    return control


async def _close_when_done(hooks: BackendHooks) -> None:
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await hooks.aclose()


class _Credentials(Extension):
    """The in-process client's: the backend secret in each message's ext."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        ext = dict(ext) if type(ext) is dict else {}
        auth = ext.get(BACKEND_FIELD[0])
        auth = dict(auth) if type(auth) is dict else {}
        auth[BACKEND_FIELD[1]] = self._secret
        ext[BACKEND_FIELD[0]] = auth
        message["ext"] = ext
        return message
