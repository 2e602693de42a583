"""Who a credential says a session is, and the refusal when it says nothing.

Both credential sources (the token registry and JWT) end in these two
values, so the extension that installs them handles one shape: an
:class:`Identity` to give the session, or an :class:`AuthError` whose
``error`` goes back to the client as the Bayeux error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeGuard

from bayeux_core import is_valid_pattern

__all__ = ["MAX_USER_LENGTH", "AuthError", "Identity", "is_valid_user"]

#: the longest user id a session may carry (MessageContext.user's rule)
MAX_USER_LENGTH = 256


class AuthError(Exception):
    """A credential was refused; ``error`` is the Bayeux error text clients see.

    The text is fixed per reason (``"401::Authentication token expired"``)
    and never quotes the credential, so it is safe to send and to log.
    """

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def is_valid_user(user: object) -> TypeGuard[str]:
    """True for a user id a session may carry: a string of 1 to 256 characters."""
    return isinstance(user, str) and 0 < len(user) <= MAX_USER_LENGTH


@dataclass(frozen=True, slots=True)
class Identity:
    """A session's user as a verified credential names it.

    Attributes:
        user: the user id (1 to 256 characters), the session's
            ``MessageContext.user``.
        info: public data about the user (JSON), shown by presence.
        channels: the Bayeux channel names or patterns the session may use,
            or None when the credential does not limit them.
        expires: when the credential stops being valid (Unix epoch
            seconds), or None for never; the session must re-handshake with
            a fresh one then.
    """

    user: str
    info: Any = None
    channels: tuple[str, ...] | None = None
    expires: float | None = None

    def __post_init__(self) -> None:
        if not is_valid_user(self.user):
            raise ValueError(f"user: want a string of 1 to {MAX_USER_LENGTH} characters")
        if self.channels is not None:
            if not isinstance(self.channels, tuple):
                raise ValueError("channels: want a tuple of channel patterns, or None")
            for channel in self.channels:
                if not is_valid_pattern(channel):
                    raise ValueError(f"channels: {channel!r} is not a channel name or pattern")
        if self.expires is not None and not math.isfinite(self.expires):
            raise ValueError(f"expires: want a finite time, not {self.expires}")
