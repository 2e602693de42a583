"""JWT material for the access-control tests: keys, claims, forged tokens, files.

The verifier's unit tests, the security suite and the three client suites
(our Python client, npm faye, client.js in Chromium) all need the same
pieces: an RSA key, the usual claims, the tokens an attacker builds by hand
because PyJWT refuses to make them (``alg: none``; HS256 signed with the RSA
public key), and the files a server reads. They live here so that a hostile
token is made the same way in every suite, and a client suite's refusal
table and server config are the same for every client.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "BAD_CONNECTION_TOKENS",
    "OTHER_SECRET",
    "SECRET",
    "b64url",
    "bad_connection_token",
    "channel_token",
    "claims",
    "connection_token",
    "forge",
    "jwt_config",
    "public_pem",
    "rsa_key",
    "write_registry",
]

SECRET = b"jwt-clients-test-secret-" + b"k" * 24  # 48 bytes: enough for HS256
#: a good HS256 secret the servers do not use: "signed with the wrong key"
OTHER_SECRET = b"another-secret-nobody-here-uses-" + b"z" * 16


# ---------------------------------------------------------------------- keys


@functools.cache
def rsa_key(name: str = "") -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key, the same for the same ``name`` in one test run.

    Made once (each takes a noticeable moment); a test needing two different
    keys asks for two names.
    """
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The PEM of ``key``'s public half, as a server's public-key file holds it."""
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


# -------------------------------------------------------------------- tokens


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWS segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A compact JWS built by hand, as an attacker builds one.

    Signed with HMAC-SHA256 under ``key`` whatever ``header`` says its
    ``alg`` is, or unsigned (an empty signature) when ``key`` is None.
    """
    encoded = (b64url(json.dumps(part).encode()) for part in (header, payload))
    signing_input = ".".join(encoded)
    if key is None:
        return signing_input + "."
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def claims(
    user: str | None = "alice", *, now: float | None = None, lifetime: float = 3600, **extra: Any
) -> dict[str, Any]:
    """``sub``, ``iat`` (10 s ago) and ``exp`` (``lifetime`` s on), then ``extra``.

    ``now`` is the wall clock unless given; a claim given as None (``user``
    too) is left out.
    """
    at = time.time() if now is None else now
    made = {"sub": user, "iat": int(at) - 10, "exp": int(at + lifetime), **extra}
    return {name: value for name, value in made.items() if value is not None}


def connection_token(
    user: str | None = "alice",
    *,
    key: str | bytes = SECRET,
    lifetime: float = 3600,
    **extra: Any,
) -> str:
    """An HS256 connection token for ``user`` (see :func:`claims`)."""
    return jwt.encode(claims(user, lifetime=lifetime, **extra), key, algorithm="HS256")


def channel_token(
    channel: str, *, key: str | bytes = SECRET, lifetime: float = 3600, **extra: Any
) -> str:
    """An HS256 channel token for ``channel``: no ``sub``, so anyone's."""
    payload = claims(None, lifetime=lifetime, channel=channel, **extra)
    return jwt.encode(payload, key, algorithm="HS256")


#: the handshake refusals each client suite shows its client: case -> the error
BAD_CONNECTION_TOKENS = {
    "expired": "401::Authentication token expired",
    "wrong key": "401::Authentication token invalid",
    "alg none": "401::Authentication token invalid",
    "HS256 signed with the RS256 public key": "401::Authentication token invalid",
}


def bad_connection_token(case: str) -> tuple[Literal["hs", "rs"], str]:
    """The token of a :data:`BAD_CONNECTION_TOKENS` case, and the server it is for.

    ``hs``: the server checks HS256 with :data:`SECRET`; ``rs``: RS256 with
    the public half of :func:`rsa_key` (as :func:`jwt_config` writes them).
    """
    if case == "expired":
        return "hs", connection_token("alice", lifetime=-60)
    if case == "wrong key":
        return "hs", connection_token("alice", key=OTHER_SECRET)
    if case == "alg none":
        return "hs", forge({"alg": "none", "typ": "JWT"}, claims("alice"), None)
    assert case == "HS256 signed with the RS256 public key", case
    confused = forge({"alg": "HS256", "typ": "JWT"}, claims("alice"), public_pem(rsa_key()))
    return "rs", confused


# --------------------------------------------------------------------- files


def jwt_config(folder: Path, algorithm: Literal["hs", "rs"]) -> Path:
    """``folder/bayeux.toml`` for the client suites, and the key file it names.

    ``hs``: HS256 with :data:`SECRET`; ``rs``: RS256 with :func:`rsa_key`'s
    public half. Leeway 0, so a token expires on time. Only the user alice
    may subscribe to ``/alice/**`` (the session's user shows), and a channel
    token opens a ``/secret/**`` channel. Handshakes without a token are
    allowed: a server fixture's "is it up?" handshake has none.
    """
    if algorithm == "hs":
        key_file = folder / "jwt.secret"
        key_file.write_bytes(SECRET + b"\n")
        key_line = f"secret-file = {json.dumps(str(key_file))}"
    else:
        key_file = folder / "jwt.pem"
        key_file.write_bytes(public_pem(rsa_key()))
        key_line = f"public-key-file = {json.dumps(str(key_file))}"
    path = folder / "bayeux.toml"
    path.write_text(
        "[access.jwt]\n"
        f"{key_line}\n"
        "leeway = 0\n"
        "[[channels]]\n"
        'pattern = "/alice/**"\n'
        'subscribe = ["alice"]\n'
        "[[channels]]\n"
        'pattern = "/secret/**"\n'
        'subscribe = "token"\n'
    )
    return path


def write_registry(path: Path, tokens: Mapping[str, str]) -> Path:
    """A token registry (the seed's tokens.json) giving each user its token."""
    path.write_text(json.dumps({user: {"token": token} for user, token in tokens.items()}))
    return path
