"""The rule for a test that needs a tool the machine may lack.

A test that needs Redis, Node.js, Chromium, curl, ... FAILS when the tool is
missing and the environment variable ``CI`` is ``true`` (any case): CI must
run it. Elsewhere it is skipped, and the skip says what is missing.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["in_ci", "require_tool", "unavailable"]


def in_ci() -> bool:
    """True under ``CI=true``, where a missing tool fails the test."""
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str, *, allow_module_level: bool = False) -> NoReturn:
    """Fail (under ``CI=true``) or skip the test: ``reason`` says what is missing."""
    if in_ci():
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


def require_tool(name: str, install: str) -> str:
    """The path of the executable ``name``; :func:`unavailable` if it is not on PATH.

    ``install`` says how to get it, e.g. ``"apt-get install curl"``.
    """
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed ({install})")
    return path
