"""Asynchronous server extensions, and loading extensions by name.

The core's :class:`~bayeux_core.Extension` hooks are synchronous and pure. An
extension that must wait for something (a database, an auth service)
subclasses :class:`AsyncExtension`: its ``incoming`` is awaited in the
connection's own task before the engine sees the batch, so a slow look-up
holds back only that client. It refuses a message by setting
``message["error"]`` (the engine then answers ``successful: false`` with that
error) or drops it by returning None. Async extensions run before the
synchronous ones. One that sets ``wants_address`` is also given the peer's IP
address (``address=``), which costs a system call per connection.
"""

from __future__ import annotations

import importlib
from typing import Any

from bayeux_core import Extension, Message

__all__ = ["AsyncExtension", "load_extension"]


class AsyncExtension:
    """Base class for extensions whose incoming hook awaits."""

    #: True: ``incoming`` is called with ``address=`` the peer's IP address
    #: (None when unknown).
    wants_address: bool = False

    async def incoming(self, message: Message, request: object) -> Message | None:
        return message


def load_extension(spec: str) -> Extension | AsyncExtension:
    """Load ``module:attribute``: an extension, its class, or a factory.

    A class or factory is called with no arguments. Anything else, or a
    missing module or attribute, raises ValueError with the reason.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"extension {spec!r} is not of the form module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        value: Any = getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if isinstance(value, (Extension, AsyncExtension)):
        return value
    if callable(value):
        try:
            made = value()
        except TypeError as exc:  # a class or factory that needs arguments
            raise ValueError(f"cannot call {spec} with no arguments: {exc}") from exc
        if isinstance(made, (Extension, AsyncExtension)):
            return made
        raise ValueError(f"{spec} returned {made!r}, not an extension")
    raise ValueError(f"{spec} is {value!r}, not an extension")
