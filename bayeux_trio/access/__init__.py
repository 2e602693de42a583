"""Access control without Python: channel rules, tokens, JWT and backend hooks.

docs/access.md explains it; the config file's sections become an
:class:`AccessSettings` (docs/configuration.md), and :func:`install` puts it
on a :class:`~bayeux_trio.BayeuxServer`.
"""

from typing import TYPE_CHECKING

from ._control import AccessControl as AccessControl
from ._identity import AuthError as AuthError
from ._identity import Identity as Identity
from ._install import check as check
from ._install import install as install
from ._install import make_control as make_control
from ._registry import TokenRegistry as TokenRegistry
from ._settings import AccessSettings as AccessSettings
from ._settings import HookSettings as HookSettings
from ._settings import JwtSettings as JwtSettings
from ._settings import TokenFileSettings as TokenFileSettings

if TYPE_CHECKING:
    from ._jwt import JwtVerifier as JwtVerifier


def __getattr__(name: str) -> object:
    # PyJWT (the access extra) is imported only by whoever uses JWT.
    if name == "JwtVerifier":
        from ._jwt import JwtVerifier

        return JwtVerifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = (
    "AccessControl",
    "AccessSettings",
    "AuthError",
    "HookSettings",
    "Identity",
    "JwtSettings",
    "JwtVerifier",
    "TokenFileSettings",
    "TokenRegistry",
    "check",
    "install",
    "make_control",
)
