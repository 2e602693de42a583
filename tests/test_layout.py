"""The rooms of bayeux_trio and what each may import (docs/architecture.md).

Every import is read from the source (those under ``if TYPE_CHECKING:`` and
inside functions too), and the test fails on:

* an import circle between modules, or between rooms;
* a room importing a room it may not (the client and the server never
  import each other);
* a private name taken across rooms: another room's ``_module``, or a
  ``_name`` from its package, or a private module of ``bayeux_core``.

The checker itself is tested on small made-up packages first, so a rule that
stopped catching anything would fail here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: room -> the rooms it may import; every room may use bayeux_core's public API
ALLOWED: dict[str, set[str]] = {
    "cli": {"server", "client", "ops", "redis", "access"},
    "access": {"server"},
    "redis": {"server"},
    "server": {"ops"},
    "ops": set(),
    "client": set(),
}
#: the package's own ``__init__``/``__main__``: re-exports of the rooms
FACADE = "(facade)"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str) -> Iterable[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, [alias.name for alias in node.names], node.lineno


def room_of(module: str) -> str | None:
    """``server`` for ``bayeux_trio.server._http``; FACADE for ``bayeux_trio``."""
    parts = module.split(".")
    if parts[0] != "bayeux_trio":
        return None
    if len(parts) == 1 or parts[1] == "__main__":
        return FACADE
    return parts[1]


def check(root: Path, packages: Iterable[str], allowed: Mapping[str, set[str]]) -> list[str]:
    """Every broken rule under ``root``, as readable lines (empty when all hold)."""
    problems: list[str] = []
    modules: dict[str, list[tuple[str, list[str], int]]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = module_name(path, root)
            modules[name] = list(imports_of(path, name))
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, found in modules.items():
        room = room_of(name)
        for target, names, line in found:
            where = f"{name}:{line}"
            # a "from package import module" imports the module too
            targets = [target] + [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
            if target.startswith("bayeux_core.") and not name.startswith("bayeux_core"):
                if any(part.startswith("_") for part in target.split(".")[1:]):
                    problems.append(f"{where}: private bayeux_core module {target}")
            if room is None:
                continue
            other = room_of(target)
            if other is None or other == room or (other == FACADE and room == FACADE):
                continue
            if room == FACADE:
                continue  # the facade re-exports whatever it likes
            if other == FACADE:
                problems.append(f"{where}: {room} imports the facade ({target}); use a room")
                continue
            if other not in allowed.get(room, set()):
                problems.append(f"{where}: {room} may not import {other} ({target})")
            private = [p for p in target.split(".")[2:] if p.startswith("_")]
            private += [n for n in names if n.startswith("_")]
            if private:
                problems.append(f"{where}: private name across rooms: {target} {private}")
    problems += [f"import circle: {' -> '.join(c)}" for c in cycles(graph)]
    rooms: dict[str, set[str]] = {}
    for name, imported in graph.items():
        room = room_of(name)
        if room is None or room == FACADE:
            continue
        for target in imported:
            other = room_of(target)
            if other is not None and other not in (room, FACADE):
                rooms.setdefault(room, set()).add(other)
    problems += [f"room circle: {' -> '.join(c)}" for c in cycles(rooms)]
    return problems


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One path per circle found by a depth-first walk of ``graph``."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


# ------------------------------------------------------------- the real tree


def test_bayeux_trio_keeps_to_its_rooms() -> None:
    assert check(ROOT, ["bayeux_trio"], ALLOWED) == []


def test_every_room_is_listed() -> None:
    rooms = {p.name for p in (ROOT / "bayeux_trio").iterdir() if (p / "__init__.py").exists()}
    assert rooms == set(ALLOWED)


def test_the_asgi_adapter_and_the_core_take_no_private_names() -> None:
    assert check(ROOT, ["bayeux_asgi", "bayeux_core"], ALLOWED) == []


# ------------------------------------------------------- the checker, checked


def make(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for room in ("", *ALLOWED):
        init = tmp_path / "bayeux_trio" / room / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        if not init.exists():
            init.write_text("")
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"bayeux_trio/client/_a.py": "from bayeux_trio.server import Hub\n"},
            "client may not import server",
        ),
        (
            {"bayeux_trio/server/_a.py": "from bayeux_trio.client import BayeuxClient\n"},
            "server may not import client",
        ),
        (
            {"bayeux_trio/server/_a.py": "from ..client import _b\n"},
            "server may not import client",
        ),
        (
            {"bayeux_trio/cli/_a.py": "from bayeux_trio.server._hub import Hub\n"},
            "private name across rooms",
        ),
        (
            {"bayeux_trio/cli/_a.py": "from bayeux_trio.server import _secret\n"},
            "private name across rooms",
        ),
        (
            {"bayeux_trio/ops/_a.py": "from bayeux_core._engine import Engine\n"},
            "private bayeux_core module",
        ),
        (
            {"bayeux_trio/ops/_a.py": "from bayeux_trio import BayeuxServer\n"},
            "imports the facade",
        ),
        (
            {
                "bayeux_trio/server/_a.py": "from ._b import x\n",
                "bayeux_trio/server/_b.py": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from ._a import y\n",
            },
            "import circle: bayeux_trio.server._a -> bayeux_trio.server._b",
        ),
        (
            {
                "bayeux_trio/server/_a.py": "from bayeux_trio.ops import x\n",
                "bayeux_trio/ops/_b.py": "def f():\n    from bayeux_trio.server import y\n",
            },
            "room circle",
        ),
    ],
)
def test_the_checker_catches(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    problems = check(make(tmp_path, files), ["bayeux_trio"], ALLOWED)
    assert any(expected in problem for problem in problems), problems


def test_the_checker_passes_allowed_imports(tmp_path: Path) -> None:
    files = {
        "bayeux_trio/cli/_a.py": "from bayeux_trio.server import BayeuxServer\n"
        "from bayeux_trio.client import BayeuxClient\nfrom bayeux_core import Engine\n",
        "bayeux_trio/server/_a.py": "from ._b import x\nfrom bayeux_trio.ops import Operations\n",
        "bayeux_trio/server/_b.py": "import trio\n",
    }
    assert check(make(tmp_path, files), ["bayeux_trio"], ALLOWED) == []


# ------------------------------------------- no Bayeux or Faye rule outside the core

#: names whose use means parsing a form or a query by hand (wire.decode_form does it)
FORM_PARSERS = {"parse_qs", "parse_qsl", "unquote_plus"}


def wire_rules(root: Path, packages: Iterable[str]) -> list[str]:
    """String literals naming a ``/meta/`` channel, and form parsers, in code.

    Prose may mention a meta channel (docstrings, help texts: they have
    spaces); a literal that is a channel name or a part of one is code that
    compares, builds or looks one up, a Bayeux decision that belongs in
    bayeux_core.
    """
    found: list[str] = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            where = path.relative_to(root)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and "/meta/" in node.value
                    and not any(char.isspace() for char in node.value)
                ):
                    found.append(f"{where}:{node.lineno}: {node.value!r}")
                elif isinstance(node, ast.ImportFrom):
                    for alias in node.names:
                        if alias.name in FORM_PARSERS:
                            found.append(f"{where}:{node.lineno}: imports {alias.name}")
                elif isinstance(node, ast.Attribute) and node.attr in FORM_PARSERS:
                    found.append(f"{where}:{node.lineno}: calls {node.attr}")
    return found


def test_no_wire_rule_outside_the_core() -> None:
    assert wire_rules(ROOT, ["bayeux_trio", "bayeux_asgi"]) == []


def test_the_wire_rule_check_catches(tmp_path: Path) -> None:
    files = {
        "bayeux_trio/server/_a.py": '"""Held /meta/connect replies."""\n'
        'if channel == "/meta/connect":\n    pass\n',
        "bayeux_trio/server/_b.py": "from urllib.parse import parse_qs\n",
        "bayeux_trio/server/_c.py": "import urllib.parse\nurllib.parse.parse_qsl(x)\n",
        "bayeux_trio/cli/_d.py": 'p.add_argument("--t", help="a /meta/connect hold")\n'
        'kind = f"/meta/{name}"\n',
    }
    found = wire_rules(make(tmp_path, files), ["bayeux_trio"])
    assert len(found) == 4, found
    assert "'/meta/'" in found[0]
    assert "'/meta/connect'" in found[1]
    assert "parse_qs" in found[2]
    assert "parse_qsl" in found[3]
