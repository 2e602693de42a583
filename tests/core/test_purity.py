"""bayeux_core stays sans-IO: no event loop, sockets, threads, clock or PRNG.

Two checks. A static one parses every module of the package and looks at its
imports. A dynamic one imports the package in a fresh interpreter and looks at
what arrived in ``sys.modules``. ``time`` is already loaded when any
interpreter starts, so only the static check can see it; ``random`` arrives
through :mod:`secrets` (``secrets.SystemRandom``), the sanctioned source of
client ids, so the dynamic check compares against what the package's own
dependencies bring in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import bayeux_core

FORBIDDEN = frozenset({"trio", "asyncio", "socket", "threading", "time", "random", "selectors"})
#: Never acceptable, even through a dependency.
NEVER = FORBIDDEN - {"time", "random"}

PACKAGE_DIR = Path(bayeux_core.__file__).parent
SOURCES = sorted(PACKAGE_DIR.glob("*.py"))

# Run in a fresh interpreter: argv[1] is a JSON list of modules to import.
_PROBE = """
import importlib, json, sys
baseline = set(sys.modules)
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
new = {m.partition(".")[0] for m in set(sys.modules) - baseline}
print(json.dumps(sorted(new)))
"""


def probe(modules: list[str]) -> set[str]:
    """Top-level modules newly loaded by importing ``modules`` in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(modules)],
        check=True,
        capture_output=True,
        text=True,
        cwd=PACKAGE_DIR.parent,
    )
    return set(json.loads(out.stdout))


def imported_modules(path: Path) -> set[str]:
    """Top-level names of absolute imports, and of string __import__ calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.partition(".")[0])
    return names


def test_sources_found() -> None:
    assert PACKAGE_DIR.name == "bayeux_core"
    assert {"__init__.py", "_engine.py", "_channels.py", "_ids.py"} <= {p.name for p in SOURCES}


def test_no_module_imports_forbidden_modules() -> None:
    offenders = {
        path.name: sorted(imported_modules(path) & FORBIDDEN)
        for path in SOURCES
        if imported_modules(path) & FORBIDDEN
    }
    assert offenders == {}


def test_static_check_sees_every_import_form(tmp_path: Path) -> None:
    # The checker itself must be able to fail.
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os, time\n"
        "import trio.lowlevel as tl\n"
        "from asyncio import sleep\n"
        "from . import sibling\n"
        "def f():\n"
        "    import socket\n"
        "    __import__('threading')\n"
        "    importlib.import_module('selectors')\n",
        encoding="utf-8",
    )
    assert imported_modules(sample) & FORBIDDEN == {
        "time",
        "trio",
        "asyncio",
        "socket",
        "threading",
        "selectors",
    }


def test_importing_the_core_loads_no_io_modules() -> None:
    loaded = probe(["bayeux_core"])
    assert "bayeux_core" in loaded
    assert loaded & NEVER == set()


def test_core_adds_nothing_forbidden_beyond_its_dependencies() -> None:
    loaded = probe(["bayeux_core"]) & FORBIDDEN
    external = sorted(
        set().union(*(imported_modules(p) for p in SOURCES)) - {"bayeux_core", "__future__"}
    )
    assert "secrets" in external
    via_dependencies = probe(external) & FORBIDDEN
    assert loaded <= via_dependencies, loaded - via_dependencies
    # Today that is random, through secrets, and nothing else.
    assert via_dependencies <= {"random"}
