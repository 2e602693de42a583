"""Client ID generation.

Faye's clientIds are 160 random bits from a CSPRNG, written in base 36 and
left-padded with ``0`` to 31 characters. A clientId is a bearer token, so the
bits come from :mod:`secrets`. The engine takes any ``Callable[[], str]``, so
tests can inject a deterministic generator.
"""

from __future__ import annotations

import secrets

__all__ = ["CLIENT_ID_LENGTH", "random_client_id"]

CLIENT_ID_LENGTH = 31
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def random_client_id() -> str:
    """160 random bits as 31 lowercase base-36 characters."""
    value = int.from_bytes(secrets.token_bytes(20), "big")
    out = []
    for _ in range(CLIENT_ID_LENGTH):
        value, digit = divmod(value, 36)
        out.append(_DIGITS[digit])
    return "".join(reversed(out))
