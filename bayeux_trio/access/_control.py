"""The access-control extension: who the sender is, then what the rules say.

One synchronous server extension does it all for every message, in this
order (docs/access.md):

1. **Who.** On ``/meta/handshake``, a connection token (JWT) or a registry
   token names the user; the session keeps the user, the token's public
   ``info``, and privately (``MessageContext.access``) the channels the token
   allows and its expiry. On later messages the sender is the session's user,
   or the user whose registry token the message itself carries (the seed's
   clients send ``ext.authToken`` on each subscribe and publish), and a
   message with the backend secret is the application itself.
2. **Whether.** Subscriptions and publishes go through the channel rules
   (``bayeux_core.AccessRules``); a refusal is a Bayeux error the client
   shows. A session whose connection token has expired is ended by
   :meth:`AccessControl.watch` with ``reconnect: handshake`` advice, and its
   messages are refused until then (a refused connect advises a handshake
   too), so that its client handshakes again with a fresh token.
3. **Clean-up.** Credentials are taken out of ``ext`` before anything is
   delivered or logged, and a rule's ``sender`` key in ``data`` is stamped
   with the publisher's user, so nobody can speak for someone else.

It is synchronous and pure apart from the wall clock (token expiry is wall
time) and the registry's file checks, so it stays on the engine's fast path:
with no outgoing hook on deliveries, a publish is still encoded once.
"""

from __future__ import annotations

import heapq
import hmac
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from bayeux_core import (
    AccessRules,
    ChannelRule,
    Extension,
    Message,
    MessageContext,
    MessageKind,
    Principal,
    is_meta,
    is_valid_pattern,
    message_kind,
)

from ._identity import AuthError, Identity
from ._registry import TokenRegistry
from ._settings import AccessSettings

if TYPE_CHECKING:
    from ._jwt import JwtVerifier

__all__ = ["AccessControl"]

log = logging.getLogger("bayeux.access")

#: where the backend secret is in ``ext``
BACKEND_FIELD = ("auth", "backend")
_EXPIRED = "401::Authentication token expired"
_ANONYMOUS = Principal()


class _RegistryIdentity(Identity):
    """An identity from a registry token: the session loses it with the user."""

    __slots__ = ()


_UNAUTHENTICATED = "401::Authentication required"


def ext_value(message: Message, path: tuple[str, ...]) -> object:
    """``message["ext"]["auth"]["token"]`` for ("auth", "token"), or None."""
    value: object = message.get("ext")
    for key in path:
        if type(value) is not dict:
            return None
        value = value.get(key)
    return value


def strip_ext(message: Message, paths: list[tuple[str, ...]]) -> None:
    """Remove each path from ``message["ext"]`` (copying the dicts on the way,
    which the sender may share), dropping objects left empty."""
    ext = message.get("ext")
    if type(ext) is not dict:
        return
    for path in paths:
        ext = _without(ext, path)
    if ext:
        message["ext"] = ext
    else:
        del message["ext"]


def _without(tree: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    head = path[0]
    if head not in tree:
        return tree
    rest = {key: value for key, value in tree.items() if key != head}
    child = tree[head]
    if len(path) > 1 and type(child) is dict:
        kept = _without(child, path[1:])
        if kept:
            rest[head] = kept
    return rest


class AccessControl(Extension):
    """Identity, channel rules, token expiry and credential hygiene.

    Build it with :func:`bayeux_trio.access.install` (which also starts
    :meth:`watch` and adds the backend hooks), or by hand with the verifiers
    the settings call for.
    """

    # Replies only: deliveries keep the encode-once path.
    outgoing_deliveries = False

    def __init__(
        self,
        settings: AccessSettings,
        *,
        jwt: JwtVerifier | None = None,
        tokens: TokenRegistry | None = None,
        backend_secret: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (settings.jwt is None) != (jwt is None):
            raise ValueError("jwt: give a JwtVerifier exactly when the settings have [access.jwt]")
        if (settings.tokens is None) != (tokens is None):
            raise ValueError("tokens: give a TokenRegistry exactly when the settings have one")
        self.settings = settings
        self.rules = AccessRules(settings.rules)
        self._jwt = jwt
        self._tokens = tokens
        #: the backend secret (the server's own client sends it too)
        self.backend_secret = backend_secret
        self._backend = backend_secret.encode() if backend_secret else None
        self._clock = clock
        self._leeway = settings.jwt.leeway if settings.jwt is not None else 0.0
        self._token_path = settings.tokens.path if settings.tokens is not None else None
        self._jwt_path = settings.jwt.token_path if settings.jwt is not None else None
        self._channel_path = settings.jwt.channel_token_path if settings.jwt is not None else None
        #: every ext path that holds a credential: never delivered
        self._secrets = [p for p in (self._token_path, self._jwt_path, self._channel_path) if p]
        if self._backend is not None:
            self._secrets.append(BACKEND_FIELD)
        #: some rule stamps the sender into the data
        self._stamps = any(rule.sender is not None for rule in settings.rules)
        #: (expiry, client id) of sessions whose connection token expires
        self._expiries: list[tuple[float, str]] = []
        self._watched: dict[str, float] = {}

    # ------------------------------------------------------------ the hook

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if "error" in message:
            # Refused already (a backend hook runs first): its error is the
            # one the client sees, not the rules' more general one.
            return message
        kind = message_kind(message)
        if kind is MessageKind.HANDSHAKE:
            self._handshake(message, context)
        elif kind is MessageKind.SUBSCRIBE:
            if self._live(message, context):
                self._subscribe(message, context)
        elif kind is MessageKind.CONNECT:
            self._live(message, context)
        elif kind is MessageKind.DISCONNECT:
            self._forget(context.client_id)
        elif (kind is MessageKind.PUBLISH or kind is MessageKind.SERVICE) and "data" in message:
            if self._live(message, context):
                self._publish(message, message["channel"], context)
            # Only publishes are delivered (a subscribe keeps its credentials
            # for the presence probe that the engine runs after this hook).
            if self._secrets and "ext" in message:
                strip_ext(message, self._secrets)
        return message

    def user_of(self, message: Message, session_user: str | None, access: Any = None) -> str | None:
        """Who sends ``message``, as the rules see it: on a handshake, the user
        its credential names; else as :meth:`_sender` says, from the session's
        ``user`` and ``access``."""
        if message_kind(message) is MessageKind.HANDSHAKE:
            try:
                identity = self._identify(message)
            except AuthError:
                return None
            return identity.user if identity is not None else None
        return self._sender(message, session_user, access)

    # ------------------------------------------------------------ messages

    def _handshake(self, message: Message, context: MessageContext) -> None:
        try:
            identity = self._identify(message)
        except AuthError as refused:
            # Not final: a client with a token callback gets a fresh token.
            message["error"] = refused.error
            return
        if identity is None:
            if self.settings.handshake == "authenticated" and not self._is_backend(message):
                message["error"] = _UNAUTHENTICATED
            return
        context.user = identity.user
        context.info = identity.info
        access: dict[str, Any] = {}
        if isinstance(identity, _RegistryIdentity):
            access["via"] = "tokens"
        if identity.channels is not None:
            access["channels"] = list(identity.channels)
        if identity.expires is not None:
            access["exp"] = identity.expires
        context.access = access or None

    def _identify(self, message: Message) -> Identity | None:
        """The handshake's identity, None if it brings no credential."""
        if self._jwt is not None and self._jwt_path is not None:
            token = ext_value(message, self._jwt_path)
            if token is not None:
                return self._jwt.connection(token)
        user = self._registry_user(message)
        if user is not None:
            assert self._tokens is not None
            return _RegistryIdentity(user=user, info=self._tokens.info_of(user))
        if self._token_path is not None and ext_value(message, self._token_path) is not None:
            raise AuthError("401::Invalid auth token")
        return None

    def _live(self, message: Message, context: MessageContext) -> bool:
        """False (and ``message`` refused) if its session's token has expired."""
        access = context.access
        if type(access) is not dict or "exp" not in access:
            return True
        expires = float(access["exp"])
        client_id = context.client_id
        if client_id is not None and client_id not in self._watched:
            # Seen first here (or adopted from another node): end it on time.
            self._watched[client_id] = expires
            heapq.heappush(self._expiries, (expires, client_id))
        if self._clock() <= expires + self._leeway:
            return True
        # A refused connect advises ``reconnect: handshake`` (the engine's rule).
        message["error"] = _EXPIRED
        return False

    def _subscribe(self, message: Message, context: MessageContext) -> None:
        subscription = message.get("subscription")
        patterns = subscription if type(subscription) is list else [subscription]
        who = self._principal(message, context, subscribing=True)
        if isinstance(who, str):
            message["error"] = who
            return
        for pattern in patterns:
            if not is_valid_pattern(pattern) or is_meta(pattern):
                return  # the engine refuses the message
            refusing = self.rules.may_subscribe(pattern, who)
            if refusing is not None:
                message["error"] = self._refusal(refusing, pattern)
                return

    def _publish(self, message: Message, channel: str, context: MessageContext) -> None:
        who = self._principal(message, context, subscribing=False)
        if isinstance(who, str):
            message["error"] = who
            return
        try:
            refusing = self.rules.may_publish(channel, who)
        except ValueError:
            return  # not a channel name: the engine refuses the message
        if refusing is not None:
            message["error"] = self._refusal(refusing, channel)
            return
        if not self._stamps or who.user is None:
            return
        found = self.rules.rule_for(channel)
        if found is not None and found[0].sender is not None:
            data = message.get("data")
            if type(data) is dict:
                message["data"] = {**data, found[0].sender: who.user}

    def _principal(
        self, message: Message, context: MessageContext, *, subscribing: bool
    ) -> Principal | str:
        """The sender as the rules see it, or the error text of a bad channel token."""
        access = context.access
        if "ext" not in message and access is None:
            # The common case, without credentials: no look-ups, no new object.
            user = context.user
            return _ANONYMOUS if user is None else Principal(user=user)
        if self._is_backend(message):
            return Principal(server=True)
        user = self._sender(message, context.user, access)
        grants = None
        if type(access) is dict and "channels" in access:
            grants = tuple(access["channels"])
        channel_token = None
        if subscribing and self._jwt is not None and self._channel_path is not None:
            token = ext_value(message, self._channel_path)
            if token is not None:
                try:
                    channel_token = self._jwt.channel(token, user=user)
                except AuthError as refused:
                    return refused.error
        return Principal(user=user, grants=grants, channel_token=channel_token)

    def _sender(self, message: Message, user: str | None, access: Any) -> str | None:
        """The user of a registry token the message carries (None if it names
        nobody: a token given is the identity, even a wrong or revoked one);
        else the session's ``user``, unless a registry token named it and the
        user has since left the registry."""
        if self._token_path is not None:
            token = ext_value(message, self._token_path)
            if token is not None:
                assert self._tokens is not None
                return self._tokens.user_of(token)
        if (
            user is not None
            and type(access) is dict
            and access.get("via") == "tokens"
            and self._tokens is not None
            and not self._tokens.has(user)
        ):
            return None
        return user

    def _registry_user(self, message: Message) -> str | None:
        if self._tokens is None or self._token_path is None:
            return None
        return self._tokens.user_of(ext_value(message, self._token_path))

    def _is_backend(self, message: Message) -> bool:
        if self._backend is None:
            return False
        given = ext_value(message, BACKEND_FIELD)
        return type(given) is str and hmac.compare_digest(given.encode(), self._backend)

    def _refusal(self, rule: ChannelRule, channel: str) -> str:
        text = rule.error if rule.error is not None else self.settings.error
        return text.replace("{channel}", channel)

    # ------------------------------------------------------------ expiry

    def _forget(self, client_id: str | None) -> None:
        """A session that left needs no ending: drop its expiry record (and,
        when most of the heap is such leftovers, rebuild it)."""
        if client_id is None or self._watched.pop(client_id, None) is None:
            return
        if len(self._expiries) > 2 * len(self._watched) + 1024:
            self._expiries = [(when, cid) for cid, when in self._watched.items()]
            heapq.heapify(self._expiries)

    def expired(self, now: float) -> list[str]:
        """Client ids whose connection token expired by wall time ``now``
        (each once), for :meth:`watch` to end."""
        due: list[str] = []
        expiries = self._expiries
        while expiries and expiries[0][0] + self._leeway < now:
            expires, client_id = heapq.heappop(expiries)
            if self._watched.get(client_id) == expires:
                del self._watched[client_id]
                due.append(client_id)
        return due

    async def watch(self, end: Callable[[str], object], *, period: float = 1.0) -> None:
        """Every ``period`` seconds, ``end(client_id)`` each session whose
        token has expired (the server asks its client to handshake again)."""
        while True:
            await trio.sleep(period)
            for client_id in self.expired(self._clock()):
                log.info("client %s: connection token expired", client_id[:8])
                end(client_id)
