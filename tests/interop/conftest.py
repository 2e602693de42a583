"""Fixtures for the interop tests: npm peers, our server and a Faye server.

All servers listen on 127.0.0.1 only and run as subprocesses for the whole
session; each test uses its own clients and channels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._support import (
    ServerProcess,
    ensure_node_modules,
    running,
    start_faye_server,
    start_our_server,
)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The pinned npm packages (tests/interop/package.json), installed if missing.

    Skips the test when Node.js or npm is missing or the install fails, and
    fails it instead when ``CI=true``.
    """
    return ensure_node_modules()


@pytest.fixture(scope="session")
def our_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Our server with no extension: ``python -m bayeux_trio serve``."""
    log = tmp_path_factory.mktemp("ours") / "server.log"
    with running(start_our_server(log)) as server:
        yield server


@pytest.fixture(scope="session")
def our_server_ext(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Our server with the test extensions of ``tests/interop/auth_ext.py``.

    ``ServerAuth`` guards the channels of its token registry; ``TransportProbe``
    stamps ``ext.transport`` on connect replies, so the tests can tell from the
    server's side whether a client really used a WebSocket.
    """
    log = tmp_path_factory.mktemp("ours-ext") / "server.log"
    args = [
        "--extension",
        "tests.interop.auth_ext:ServerAuth",
        "--extension",
        "tests.interop.auth_ext:TransportProbe",
        "--log-level",
        "debug",
    ]
    with running(start_our_server(log, args)) as server:
        yield server


@pytest.fixture(scope="session")
def faye_server(
    node_modules: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A stock Faye 1.4.3 NodeAdapter (mount /faye, timeout 25) for comparison."""
    log = tmp_path_factory.mktemp("faye") / "server.log"
    with running(start_faye_server(node_modules, log)) as server:
        yield server
