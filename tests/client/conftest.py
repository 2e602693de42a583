"""Fixtures for the client tests.

``transport`` runs a test once per client transport. The Faye fixtures reuse
the interop tests' npm install (``tests/interop/_support``): without Node.js
the Faye tests are skipped, or fail under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop._support import (
    ServerProcess,
    ensure_node_modules,
    running,
    start_faye_server,
)

JS_DIR = Path(__file__).resolve().parent / "js"


@pytest.fixture(params=["websocket", "long-polling"])
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The interop tests' pinned npm packages (faye 1.4.3), installed if missing."""
    return ensure_node_modules()


@pytest.fixture(scope="session")
def faye_auth_server(
    node_modules: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Faye 1.4.3 with a token check on /private/** (js/faye_auth_server.js)."""
    log = tmp_path_factory.mktemp("faye-auth") / "server.log"
    with running(start_faye_server(node_modules, log, JS_DIR / "faye_auth_server.js")) as server:
        yield server
