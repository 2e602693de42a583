"""`make run` (the README's first command): what it installs, and what it serves.

`make run` only starts a demo, so it installs the package alone; the checks
and tests (`make test`, `lint`, `typecheck`, `unit`, `fuzz`) install the test
and fuzz tooling on top. The chat demo the browser tests run is started
exactly as `make run` starts it. Read with `make -n -B` (print every command,
run nothing).
"""

from __future__ import annotations

import shlex
import subprocess

import pytest

from tests._support.ci import require_tool

from ._support import CHAT_ARGS, REPO_ROOT


def dry_run(target: str) -> list[str]:
    """The commands `make <target>` would run from a fresh clone."""
    make = require_tool("make", "apt-get install make")
    result = subprocess.run(
        [make, "-n", "-B", target],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    return [command for command in commands if "pip install" in command]


#: what running needs: the package with the ASGI example's server (issue 15)
#: and the access extra for configs with JWT or hooks (issue 17)
RUN_INSTALL = "pip install --quiet -e '.[asgi,access]' 'uvicorn>=0.30'"


def test_make_run_installs_only_what_running_needs() -> None:
    commands = installs(dry_run("run"))
    assert any(command.endswith(RUN_INSTALL) for command in commands), commands
    for command in commands:
        for tool in ("test", "fuzz", "bench", "playwright", "mypy", "atheris"):
            assert tool not in command.split("pip install", 1)[1], command


@pytest.mark.parametrize("target", ["test", "lint", "typecheck", "unit", "fuzz"])
def test_checks_install_the_test_and_fuzz_tooling(target: str) -> None:
    commands = installs(dry_run(target))
    # from a fresh clone: what running needs first, then the extras
    assert any(command.endswith(RUN_INSTALL) for command in commands), commands
    assert any(command.endswith("-e '.[test,fuzz]'") for command in commands), commands


def test_the_tests_serve_the_chat_as_make_run_does() -> None:
    (serve,) = [command for command in dry_run("run") if " serve " in command]
    words = shlex.split(serve)
    assert words[0].endswith("/bayeux")
    assert words[1:] == ["serve", *CHAT_ARGS]
    assert "--history" in CHAT_ARGS
