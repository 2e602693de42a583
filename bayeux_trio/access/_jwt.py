"""JWT connection and channel tokens, checked against the configured keys.

A connection token (on handshake) names the session's user in ``sub``; a
channel token (on subscribe) opens the one channel in its ``channel`` claim.
Each kind is refused where the other is expected, so a channel token handed
out for one room never logs anybody in.

PyJWT checks signatures, ``aud`` and ``iss``; the times (``exp``, ``nbf``,
``iat``) are checked here against an injected clock, so tests can move time
and the leeway is the configured one. Which algorithms may verify a token
comes from the settings and the key, never from the token: with a secret
only HS*, with a public key only what that key type can check, so neither
``alg: none`` nor a public key used as an HMAC secret gets through. Keys are
read once, at construction: a bad file stops the server at start rather
than refusing every client later.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bayeux_core import is_valid_name, is_valid_pattern

from ._identity import AuthError, Identity, is_valid_user

if TYPE_CHECKING:
    from pathlib import Path

    from jwt.types import Options  # PyJWT 2.10+; only a type here

    from ._settings import JwtSettings

__all__ = ["MAX_TOKEN_LENGTH", "JwtVerifier"]

#: the longest token looked at; a longer one is refused unread
MAX_TOKEN_LENGTH = 8 * 1024
#: the smallest RSA modulus accepted (PyJWT warns below it: NIST SP 800-131A)
MIN_RSA_BITS = 2048

_CONNECTION = "Authentication token"
_CHANNEL = "Channel token"

#: RFC 7518 section 3.2: an HMAC key at least as long as the hash
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
#: each curve signs with one hash: P-256 with ES256 only, and so on
_EC_ALGORITHMS = {
    "secp256r1": frozenset({"ES256"}),
    "secp384r1": frozenset({"ES384"}),
    "secp521r1": frozenset({"ES512", "ES521"}),
    "secp256k1": frozenset({"ES256K"}),
}
#: PyJWT checks signatures, aud, iss and jti; times are ours (see the docstring)
_OPTIONS: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_sub": False,
    "enforce_minimum_key_length": True,
}

_PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class _Key:
    """One verification key and the algorithms it may check."""

    kid: str | None
    key: bytes | _PublicKey
    algorithms: tuple[str, ...]


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def _check_known(algorithm: str) -> None:
    try:
        jwt.get_algorithm_by_name(algorithm)
    except NotImplementedError:
        raise ValueError(f"algorithms: {algorithm} is not an algorithm PyJWT knows") from None


def _secret_key(settings: JwtSettings, path: Path) -> _Key:
    # a trailing line end is the editor's, not the secret's
    secret = _read(path, "secret_file").rstrip(b"\r\n")
    algorithms = settings.accepted_algorithms
    for algorithm in algorithms:
        _check_known(algorithm)
        need = _HMAC_MIN_BYTES.get(algorithm, 32)
        if len(secret) < need:
            raise ValueError(
                f"secret_file: the secret is {len(secret)} bytes; {algorithm} wants at "
                f"least {need} (RFC 7518, section 3.2)"
            )
        try:
            jwt.get_algorithm_by_name(algorithm).prepare_key(secret)
        except jwt.InvalidKeyError:
            # a PEM or SSH public key: the classic HS/RS confusion, set up by hand
            raise ValueError("secret_file: holds a public key, not a shared secret") from None
    return _Key(None, secret, algorithms)


def _usable(key: object, accepted: tuple[str, ...], where: str) -> _Key:
    """``key`` with the accepted algorithms it can check; ValueError if none or a bad key."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(
                f"{where}: the RSA key has {key.key_size} bits; want at least {MIN_RSA_BITS}"
            )
        kind, suits = "an RSA key", _RSA_ALGORITHMS
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kind = f"an EC key on {key.curve.name}"
        suits = _EC_ALGORITHMS.get(key.curve.name, frozenset())
    elif isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{where}: a private key; give the public key only")
    else:
        raise ValueError(f"{where}: want an RSA or EC public key")
    usable = tuple(algorithm for algorithm in accepted if algorithm in suits)
    if not usable:
        raise ValueError(f"{where}: {kind} cannot check {', '.join(accepted)} (algorithms)")
    for algorithm in usable:
        _check_known(algorithm)
    return _Key(None, key, usable)


def _public_key(settings: JwtSettings, path: Path) -> _Key:
    data = _read(path, "public_key_file")
    try:
        key = load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("public_key_file: not a PEM public key") from None
    return _usable(key, settings.accepted_algorithms, "public_key_file")


def _jwks_keys(settings: JwtSettings, path: Path) -> list[_Key]:
    data = _read(path, "jwks_file")
    try:
        document = json.loads(data)
    except ValueError:
        raise ValueError("jwks_file: not a JSON Web Key Set (not JSON)") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError('jwks_file: not a JSON Web Key Set (want {"keys": [a key, ...]})')
    accepted = settings.accepted_algorithms
    keys: list[_Key] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"jwks_file: key {index} is not a JSON object")
        kid = entry.get("kid")
        where = f"jwks_file: key {index}" + (f" ({kid!r})" if kid is not None else "")
        if kid is not None and not isinstance(kid, str):
            raise ValueError(f"{where}: kid must be a string")
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key verifies nothing
        try:
            jwk = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            raise ValueError(
                f"{where}: not a usable JSON Web Key (kty {entry.get('kty')!r})"
            ) from None
        key = _usable(jwk.key, accepted, where)
        usable = key.algorithms
        if "alg" in entry:
            # the key is bound to one algorithm: that one, and only if allowed
            if jwk.algorithm_name not in usable:
                raise ValueError(
                    f"{where}: is for {jwk.algorithm_name}, which algorithms do not allow"
                )
            usable = (jwk.algorithm_name,)
        if kid is not None and any(other.kid == kid for other in keys):
            raise ValueError(f"{where}: two keys have this kid")
        keys.append(_Key(kid, key.key, usable))
    if not keys:
        raise ValueError("jwks_file: no signing keys (all are marked for encryption)")
    return keys


def _time_claim(claims: dict[str, Any], name: str, invalid: AuthError) -> float | None:
    """A NumericDate claim as a finite float, None if absent; ``invalid`` otherwise."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid
    try:
        seconds = float(value)
    except OverflowError:
        raise invalid from None
    if not math.isfinite(seconds):
        raise invalid  # json accepts NaN and Infinity: neither is a time
    return seconds


class JwtVerifier:
    """Checks connection and channel tokens against the configured key(s).

    Args:
        settings: the key source, algorithms, leeway, audience and issuer.
        clock: Unix epoch seconds now, for ``exp``, ``nbf`` and ``iat``.

    Raises:
        ValueError: a key file is missing, unreadable or unusable; the
            message starts with the setting's name.

    A token that has ``aud`` is refused unless ``settings.audience`` is set
    and listed in it (RFC 7519, 4.1.3). With a JWKS, a token's ``kid``
    picks the key; a token without one is accepted only when the set has a
    single key.
    """

    def __init__(self, settings: JwtSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._by_kid: dict[str, _Key] = {}
        if settings.secret_file is not None:
            self._keys = [_secret_key(settings, settings.secret_file)]
        elif settings.public_key_file is not None:
            self._keys = [_public_key(settings, settings.public_key_file)]
        else:
            assert settings.jwks_file is not None  # JwtSettings wants exactly one source
            self._keys = _jwks_keys(settings, settings.jwks_file)
            self._by_kid = {key.kid: key for key in self._keys if key.kid is not None}

    def connection(self, token: object) -> Identity:
        """The identity a handshake's connection token gives; AuthError if refused."""
        claims, expires = self._verify(token, _CONNECTION)
        invalid = AuthError(f"401::{_CONNECTION} invalid")
        if "channel" in claims:
            raise invalid  # a channel token: it opens a channel, it names no session
        user = claims.get("sub")
        if not is_valid_user(user):
            raise invalid
        channels: tuple[str, ...] | None = None
        if self._settings.channels_claim in claims:
            listed = claims[self._settings.channels_claim]
            if not isinstance(listed, list) or not all(map(is_valid_pattern, listed)):
                raise invalid
            channels = tuple(listed)
        info = claims.get(self._settings.info_claim)
        return Identity(user=user, info=info, channels=channels, expires=expires)

    def channel(self, token: object, *, user: str | None = None) -> str:
        """The channel a subscribe's channel token opens; AuthError if refused.

        A token with a ``sub`` claim is for that user only: ``user`` (the
        subscriber's) must equal it, so a leaked token is no use to others.
        """
        claims, _ = self._verify(token, _CHANNEL)
        channel = claims.get("channel")
        if not is_valid_name(channel):
            raise AuthError(f"401::{_CHANNEL} invalid")
        if "sub" in claims and claims["sub"] != user:
            raise AuthError(f"401::{_CHANNEL} is for another user")
        return channel

    def _key_for(self, header: dict[str, Any]) -> _Key | None:
        if self._settings.jwks_file is None:
            return self._keys[0]  # one key: a kid names nothing
        kid = header.get("kid")
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return self._by_kid.get(kid) if isinstance(kid, str) else None

    def _verify(self, token: object, what: str) -> tuple[dict[str, Any], float | None]:
        """The token's verified claims and its ``exp``; AuthError naming ``what``."""
        if token is None or (isinstance(token, str) and not token):
            raise AuthError(f"401::{what} missing")
        invalid = AuthError(f"401::{what} invalid")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise invalid
        settings = self._settings
        try:
            key = self._key_for(jwt.get_unverified_header(token))
            if key is None:
                raise invalid
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                options=_OPTIONS,
                audience=settings.audience,
                issuer=settings.issuer,
            )
        except (jwt.PyJWTError, ValueError):
            raise invalid from None
        now = self._clock()
        leeway = settings.leeway
        expires = _time_claim(claims, "exp", invalid)
        not_before = _time_claim(claims, "nbf", invalid)
        issued = _time_claim(claims, "iat", invalid)
        if expires is not None and now >= expires + leeway:
            raise AuthError(f"401::{what} expired")
        if not_before is not None and not_before - leeway > now:
            raise AuthError(f"401::{what} not yet valid")
        if issued is not None and issued - leeway > now:
            raise AuthError(f"401::{what} not yet valid")  # issued in the future
        return claims, expires
