"""The seed's token registry: users and their secret tokens in a JSON file.

The file is the private-chat demo's ``tokens.json``::

    {"alice": {"token": "alice-7f3a9c1e", "follows": ["bob"], "info": {...}}}

or the short form ``{"alice": "alice-7f3a9c1e"}``; keys besides ``token``
and ``info`` belong to the application and are ignored here.

Tokens are kept only as SHA-256 digests and looked up by digest, so the
time a lookup takes says nothing about how much of a guess was right.

Operators edit the file while the server runs (add a user, revoke one), so
it is re-read when its (mtime, size, inode) changes, checked at most once
per ``check_every`` seconds. A broken edit must not lock everybody out: the
previous contents stay in force, with one warning per broken version, until
the file is good again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._identity import MAX_USER_LENGTH, is_valid_user

if TYPE_CHECKING:
    from pathlib import Path

    from ._settings import TokenFileSettings

__all__ = ["TokenRegistry"]

log = logging.getLogger("bayeux.access")

#: what identifies one version of the file: (st_mtime_ns, st_size, st_ino)
_Signature = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class _Entries:
    """One good version of the file."""

    by_digest: dict[bytes, str]
    info: dict[str, Any]
    users: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", frozenset(self.by_digest.values()))


def _digest(token: str) -> bytes:
    # surrogatepass: JSON may spell a lone surrogate, which plain UTF-8 refuses
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"{key!r} appears twice")
        result[key] = value
    return result


def _parse(data: bytes) -> _Entries:
    """The users in ``data``; ValueError saying what is wrong (never a token)."""
    try:
        document = json.loads(data, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    except RecursionError:
        raise ValueError("not JSON (nested too deeply)") from None
    if not isinstance(document, dict):
        raise ValueError('want a JSON object {"user": {"token": "..."}, ...}')
    by_digest: dict[bytes, str] = {}
    info: dict[str, Any] = {}
    for user, entry in document.items():
        if not is_valid_user(user):
            raise ValueError(f"user {user!r}: want 1 to {MAX_USER_LENGTH} characters")
        if isinstance(entry, dict):
            token = entry.get("token")
            if "info" in entry:
                info[user] = entry["info"]
        else:
            token = entry
        if not isinstance(token, str) or not token:
            raise ValueError(f'user {user!r}: want "token": a non-empty string')
        digest = _digest(token)
        other = by_digest.get(digest)
        if other is not None:
            raise ValueError(f"users {other!r} and {user!r} have the same token")
        by_digest[digest] = user
    return _Entries(by_digest, info)


class TokenRegistry:
    """Who a token belongs to, from a JSON file kept up to date.

    Args:
        settings: the file (and the ``ext`` field, which the caller reads).
        clock: any monotonic seconds, to space out the file checks.
        check_every: the least time between two checks of the file.

    Raises:
        ValueError: the file is missing, unreadable or not the right shape
            at construction; the message starts with ``file:``.
    """

    def __init__(
        self,
        settings: TokenFileSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_every: float = 1.0,
    ) -> None:
        if not (math.isfinite(check_every) and check_every >= 0):
            raise ValueError(f"check_every: want 0 or more seconds, not {check_every}")
        self._path: Path = settings.file
        self._clock = clock
        self._check_every = check_every
        self._checked_at = clock()
        try:
            self._signature: _Signature | None = self._stat()
            self._entries = _parse(self._path.read_bytes())
        except OSError as exc:
            raise ValueError(f"file: cannot read {self._path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ValueError(f"file: {self._path}: {exc}") from None

    def user_of(self, token: object) -> str | None:
        """The user whose token this is, or None (also for a non-string or empty one)."""
        self._refresh()
        if not isinstance(token, str) or not token:
            return None
        return self._entries.by_digest.get(_digest(token))

    def info_of(self, user: str) -> Any:
        """The user's ``info`` from the file, or None if none (or no such user)."""
        self._refresh()
        return self._entries.info.get(user)

    @property
    def users(self) -> frozenset[str]:
        """Everyone the file lists now."""
        self._refresh()
        return self._entries.users

    def has(self, user: str) -> bool:
        """True if the file lists ``user`` now."""
        self._refresh()
        return user in self._entries.users

    def _stat(self) -> _Signature:
        result = os.stat(self._path)
        return (result.st_mtime_ns, result.st_size, result.st_ino)

    def _refresh(self) -> None:
        """Re-read the file if it changed, at most once per ``check_every``."""
        now = self._clock()
        if now - self._checked_at < self._check_every:
            return
        self._checked_at = now
        try:
            signature: _Signature | None = self._stat()
        except OSError:
            signature = None
        if signature == self._signature:
            return
        # remembered before reading: a broken version is reported once, not per check
        self._signature = signature
        try:
            entries = _parse(self._path.read_bytes())
        except OSError as exc:
            log.warning(
                "token file %s: cannot read it (%s); keeping the previous users",
                self._path,
                exc.strerror or exc,
            )
            return
        except ValueError as exc:
            log.warning("token file %s: %s; keeping the previous users", self._path, exc)
            return
        self._entries = entries
        log.info("token file %s: reloaded, %d users", self._path, len(entries.by_digest))
