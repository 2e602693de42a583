"""The ``bayeux`` command: ``serve``, ``check-config``, ``publish``, ``subscribe``."""

from ._main import main as main

__all__ = ("main",)
