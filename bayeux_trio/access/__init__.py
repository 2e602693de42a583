"""Access control without Python: channel rules, tokens, JWT and backend hooks.

docs/access.md explains it; the config file's sections become an
:class:`AccessSettings` (docs/configuration.md).
"""

from ._settings import AccessSettings as AccessSettings
from ._settings import HookSettings as HookSettings
from ._settings import JwtSettings as JwtSettings
from ._settings import TokenFileSettings as TokenFileSettings

__all__ = (
    "AccessSettings",
    "HookSettings",
    "JwtSettings",
    "TokenFileSettings",
)
