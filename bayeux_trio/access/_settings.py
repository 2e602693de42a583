"""Access-control settings: plain frozen values, checked when built.

The config file's ``[access]``, ``[[channels]]``, ``[access.tokens]``,
``[access.jwt]`` and ``[hooks.*]`` tables become these (bayeux_trio.cli's
config loader); Python users build them directly. Each ``__post_init__``
raises ValueError naming the bad field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bayeux_core import ChannelRule

__all__ = [
    "AccessSettings",
    "HookSettings",
    "JwtSettings",
    "TokenFileSettings",
]

#: the longest clock leeway a JWT check may allow, seconds
MAX_LEEWAY = 300.0

#: an HTTP header name (RFC 9110 token)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: an HTTP header value as the hooks' client sends it: visible ASCII, spaces
#: and tabs inside only (httpx encodes values as ASCII)
_HEADER_VALUE = re.compile(r"([\x21-\x7e]([\t\x20-\x7e]*[\x21-\x7e])?)?")
#: headers the hooks' client sets itself: the framing, the target, the body's
#: type and the call's id. Another value there breaks every call.
_OWN_HEADERS = frozenset(
    {"connection", "content-length", "content-type", "host", "transfer-encoding", "x-request-id"}
)


def _ext_path(value: str, name: str) -> tuple[str, ...]:
    """``"auth.token"`` -> ("auth", "token"): where in ``ext`` a token is."""
    parts = tuple(value.split("."))
    if not value or any(not part for part in parts):
        raise ValueError(f"{name}: {value!r} is not a dotted path in ext (say 'auth.token')")
    return parts


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenFileSettings:
    """The seed's token registry: users and their secret tokens in a JSON file.

    Attributes:
        file: JSON ``{"user": {"token": "...", ...}, ...}`` (or ``{"user":
            "token"}``); re-read when it changes.
        field: where in a message's ``ext`` the token is (default
            ``authToken``, as the seed's clients send it).
    """

    file: Path
    field: str = "authToken"

    def __post_init__(self) -> None:
        _ext_path(self.field, "field")

    @property
    def path(self) -> tuple[str, ...]:
        return _ext_path(self.field, "field")


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtSettings:
    """How connection and channel tokens (JWT) are checked.

    Exactly one key source: ``secret_file`` (HS256), ``public_key_file``
    (RS256 or ES256, PEM) or ``jwks_file`` (a JSON Web Key Set, RS256/ES256).

    Attributes:
        algorithms: accepted ``alg`` values; must suit the key source
            (HS* only with a secret, RS*/ES* only with public keys): no
            ``none``, no confusion between the two.
        field: where the connection token is in a handshake's ``ext``.
        channel_field: where a channel token is in a subscribe's ``ext``.
        leeway: seconds of clock skew tolerated on ``exp``/``nbf``/``iat``
            (at most 300).
        audience, issuer: required ``aud``/``iss`` values, if set.
        info_claim: the claim whose value becomes the session's public
            ``info`` (presence shows it), if present.
        channels_claim: the claim listing the channel patterns a session may
            use (optional in tokens; absent means the rules alone decide).
    """

    secret_file: Path | None = None
    public_key_file: Path | None = None
    jwks_file: Path | None = None
    algorithms: tuple[str, ...] = ()
    field: str = "auth.token"
    channel_field: str = "auth.channelToken"
    leeway: float = 5.0
    audience: str | None = None
    issuer: str | None = None
    info_claim: str = "info"
    channels_claim: str = "channels"

    def __post_init__(self) -> None:
        sources = [self.secret_file, self.public_key_file, self.jwks_file]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("secret_file, public_key_file, jwks_file: give exactly one key source")
        if not (math.isfinite(self.leeway) and 0 <= self.leeway <= MAX_LEEWAY):
            raise ValueError(f"leeway: want 0 to {MAX_LEEWAY:g} seconds, not {self.leeway}")
        _ext_path(self.field, "field")
        _ext_path(self.channel_field, "channel_field")
        wanted = self.accepted_algorithms
        if not wanted:
            raise ValueError("algorithms: give at least one")
        symmetric = self.secret_file is not None
        for alg in wanted:
            if alg.lower() == "none":
                raise ValueError("algorithms: 'none' is never accepted")
            if symmetric and not alg.startswith("HS"):
                raise ValueError(f"algorithms: {alg} needs a public key, not secret_file")
            if not symmetric and not alg.startswith(("RS", "ES", "PS")):
                raise ValueError(f"algorithms: {alg} needs secret_file, not a public key")

    @property
    def token_path(self) -> tuple[str, ...]:
        return _ext_path(self.field, "field")

    @property
    def channel_token_path(self) -> tuple[str, ...]:
        return _ext_path(self.channel_field, "channel_field")

    @property
    def accepted_algorithms(self) -> tuple[str, ...]:
        """``algorithms``, or the default for the key source."""
        if self.algorithms:
            return self.algorithms
        return ("HS256",) if self.secret_file is not None else ("RS256", "ES256")


@dataclass(frozen=True, slots=True, kw_only=True)
class HookSettings:
    """One backend hook: an HTTP POST to the application per message.

    Attributes:
        url: where to POST (http:// or https://).
        timeout: seconds to wait for the answer (also for a free slot).
        max_in_flight: calls at once; more wait for a slot up to ``timeout``.
        on_error: what to do when the backend is down, slow or answers
            garbage: ``refuse`` the message (default) or ``allow`` it.
        headers: extra request headers (say an ``Authorization`` the
            backend checks).
    """

    url: str
    timeout: float = 2.0
    max_in_flight: int = 100
    on_error: Literal["refuse", "allow"] = "refuse"
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: want an http:// or https:// URL, not {self.url!r}")
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= 60):
            raise ValueError(f"timeout: want 0 to 60 seconds, not {self.timeout}")
        if not 1 <= self.max_in_flight <= 10_000:
            raise ValueError(f"max_in_flight: want 1 to 10000, not {self.max_in_flight}")
        if self.on_error not in ("refuse", "allow"):
            raise ValueError(f"on_error: want 'refuse' or 'allow', not {self.on_error!r}")
        _check_headers(self.headers)


def _check_headers(headers: object) -> None:
    """Refuse headers that would make every call fail, now rather than per message
    (where ``on_error = "allow"`` would quietly let every message through).
    Values are never quoted: they are often secrets."""
    if not isinstance(headers, tuple):
        raise ValueError(f"headers: want (name, value) pairs, not {type(headers).__name__}")
    seen: set[str] = set()
    for pair in headers:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"headers: want (name, value) pairs, not {pair!r}")
        name, value = pair
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"headers: {name!r} is not an HTTP header name")
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"headers: {name} is set by the server itself")
        if name.lower() in seen:
            raise ValueError(f"headers: {name} is given twice")
        seen.add(name.lower())
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise ValueError(
                f"headers: the value of {name} is not an HTTP header value "
                "(ASCII letters, digits, punctuation; spaces or tabs inside only)"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessSettings:
    """Everything access control needs; the default allows anything (Faye's).

    Attributes:
        rules: channel rules (bayeux_core.ChannelRule); the most specific
            pattern that matches a channel decides (bayeux_core.AccessRules).
        handshake: ``anyone`` may handshake, or only ``authenticated``
            clients (a valid connection token, or a registry token).
        error: the refusal clients see when a rule says no; ``{channel}`` is
            replaced by the channel. A rule's own ``error`` wins.
        backend_secret_file: a file holding the secret a backend puts in
            ``ext.auth.backend`` to publish where only the server may.
        tokens, jwt: where identities come from (either, both or neither).
        hooks: backend hooks by message kind: ``handshake``, ``subscribe``,
            ``publish``.
    """

    rules: tuple[ChannelRule, ...] = ()
    handshake: Literal["anyone", "authenticated"] = "anyone"
    error: str = "403:{channel}:Forbidden"
    backend_secret_file: Path | None = None
    tokens: TokenFileSettings | None = None
    jwt: JwtSettings | None = None
    hooks: dict[str, HookSettings] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.handshake not in ("anyone", "authenticated"):
            raise ValueError(f"handshake: want 'anyone' or 'authenticated', not {self.handshake!r}")
        for kind in self.hooks:
            if kind not in ("handshake", "subscribe", "publish"):
                raise ValueError(
                    f"hooks.{kind}: want hooks.handshake, hooks.subscribe or hooks.publish"
                )
        if self.handshake == "authenticated" and self.tokens is None and self.jwt is None:
            # A hook's answer names no user, so it cannot make a handshake
            # authenticated: with a hook alone, every handshake was refused.
            raise ValueError(
                "handshake: 'authenticated' needs [access.tokens] or [access.jwt] (a token "
                "that names the user); to let a [hooks.handshake] decide alone, keep "
                "handshake = 'anyone'"
            )

    @property
    def active(self) -> bool:
        """True if anything is configured (else no extension is installed)."""
        return bool(
            self.rules
            or self.handshake != "anyone"
            or self.tokens
            or self.jwt
            or self.hooks
            or self.backend_secret_file
        )
