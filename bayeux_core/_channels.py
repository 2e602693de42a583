"""Channel names, wildcard patterns, and the subscription index.

Grammar (Bayeux 1.0, as Faye compiles it): a name is ``/`` followed by one or
more segments of ``[A-Za-z0-9-_!~()$@]`` joined by ``/``. A pattern is a name
whose *last* segment is ``*`` (exactly one segment) or ``**`` (one or more
segments); ``/*`` and ``/**`` alone are patterns too.

Routing never tests every subscription against a published name. Instead
:func:`expand` lists the few patterns that can match a name (O(depth)), and the
index is looked up with each: ``/a/b/c`` expands to ``/a/b/c``, ``/a/b/*``,
``/a/b/**``, ``/a/**`` and ``/**``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TypeGuard

__all__ = [
    "MAX_CHANNEL_LENGTH",
    "MAX_CHANNEL_SEGMENTS",
    "expand",
    "is_meta",
    "is_pattern",
    "is_service",
    "is_valid_name",
    "is_valid_pattern",
    "matches",
]

#: Longer names are refused as invalid; nothing legitimate comes close.
MAX_CHANNEL_LENGTH = 1024
#: Deeper names are refused: :func:`expand` is O(depth) per publish.
MAX_CHANNEL_SEGMENTS = 64

_SEGMENT = r"[A-Za-z0-9\-_!~()$@]+"
_NAME_RE = re.compile(rf"(?:/{_SEGMENT})+")
_PATTERN_RE = re.compile(rf"(?:/{_SEGMENT})*/\*\*?")


def _bounded(name: object) -> TypeGuard[str]:
    return (
        type(name) is str
        and len(name) <= MAX_CHANNEL_LENGTH
        and name.count("/") <= MAX_CHANNEL_SEGMENTS
    )


def is_valid_name(name: object) -> TypeGuard[str]:
    """True for a concrete channel name (no wildcard): one can publish to it."""
    return _bounded(name) and _NAME_RE.fullmatch(name) is not None


def is_valid_pattern(pattern: object) -> TypeGuard[str]:
    """True for a name or a wildcard pattern: one can subscribe to it."""
    if not _bounded(pattern):
        return False
    return _NAME_RE.fullmatch(pattern) is not None or _PATTERN_RE.fullmatch(pattern) is not None


def is_pattern(channel: str) -> bool:
    """True if ``channel`` ends in a ``*`` or ``**`` segment."""
    return channel.endswith(("/*", "/**"))


def is_meta(channel: str) -> bool:
    """True for ``/meta`` and anything under it."""
    return channel == "/meta" or channel.startswith("/meta/")


def is_service(channel: str) -> bool:
    """True for ``/service`` and anything under it."""
    return channel == "/service" or channel.startswith("/service/")


def _expand(name: str) -> Iterator[str]:
    yield name
    yield "/**"
    end = name.rfind("/")
    yield name[:end] + "/*"
    while end > 0:
        yield name[:end] + "/**"
        end = name.rfind("/", 0, end)


def expand(name: str) -> list[str]:
    """Every pattern that matches the concrete ``name``, the name included.

    ``expand("/a/b")`` is ``["/a/b", "/**", "/a/*", "/a/**"]``. Each pattern
    appears once. ``name`` must be valid (:func:`is_valid_name`).
    """
    return list(_expand(name))


def matches(pattern: str, name: str) -> bool:
    """True if a subscription to ``pattern`` receives a publish to ``name``.

    Both must be valid; this is the reference semantics that the index built on
    :func:`expand` agrees with (a property test checks it).
    """
    if pattern.endswith("/**"):
        prefix = pattern[:-2]
        return name.startswith(prefix) and len(name) > len(prefix)
    if pattern.endswith("/*"):
        prefix = pattern[:-1]
        return (
            name.startswith(prefix) and "/" not in name[len(prefix) :] and len(name) > len(prefix)
        )
    return pattern == name
