"""Fixtures for the ASGI tests: one server subprocess per flavour, npm peers.

The servers listen on 127.0.0.1 only. ``asgi_server`` is parametrized over
:data:`~tests.asgi._support.FLAVOURS`, so every test that takes it runs once
under uvicorn, hypercorn (asyncio) and hypercorn's trio worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop._support import ServerProcess, ensure_node_modules, running

from ._support import FLAVOURS, Flavour, start


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The pinned npm packages (tests/interop); skipped if missing, failed under CI=true."""
    return ensure_node_modules()


@pytest.fixture(scope="package", params=FLAVOURS, ids=[f.name for f in FLAVOURS])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    result: Flavour = request.param
    return result


@pytest.fixture(scope="package")
def asgi_server(
    flavour: Flavour, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The flavour's server, running for this package's tests."""
    log = tmp_path_factory.mktemp(flavour.name) / "server.log"
    with running(start(flavour, log)) as server:
        yield server
