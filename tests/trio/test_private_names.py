"""The trio layer uses no private name of h11, wsproto or trio (issue 15, item 5).

A private name is free to change in any release of its library, so using one
would tie us to the versions we happened to test. The check reads the source
of ``bayeux_trio`` (it does not run it): no import of a private module, no
attribute reached on another object whose name is private in h11 or wsproto
(names our own code defines are ours), no ``getattr`` with one, and not
trio's ``_sock`` (the stdlib socket under a trio socket).
"""

from __future__ import annotations

import ast
import functools
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("h11", "wsproto", "trio")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _sources(root: Path) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(root.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _private_names(root: Path) -> set[str]:
    """Private attribute, function and class names used or defined under ``root``."""
    names: set[str] = set()
    for _, tree in _sources(root):
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.ClassDef) and _private(node.name):
                names.add(node.name)
    return names


def _defined_names(root: Path) -> set[str]:
    """Private names code under ``root`` defines: methods, classes, slots, ``self._x =``."""
    names: set[str] = set()
    for _, tree in _sources(root):
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if _private(node.name):
                    names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and _private(node.attr)
            ):
                names.add(node.attr)
            elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__slots__" for target in node.targets
            ):
                for element in ast.walk(node.value):
                    if isinstance(element, ast.Constant) and isinstance(element.value, str):
                        names.add(element.value)
    return names


def _library_root(name: str) -> Path:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    return Path(module.__file__).parent


@functools.cache
def _theirs() -> frozenset[str]:
    """Private names of h11 and wsproto that our own code does not define."""
    theirs: set[str] = set()
    for library in ("h11", "wsproto"):
        theirs |= _private_names(_library_root(library))
    ours = _defined_names(ROOT / "bayeux_trio") | _defined_names(ROOT / "bayeux_core")
    # A name both use (``_state``, say) may be one of ours on another object
    # of ours; it is left out. trio's ``_sock`` is ours too, on our objects
    # (``self._sock``), so it is checked on any other object by name.
    return frozenset((theirs - ours) | {"_sock"})


def _problems() -> list[str]:
    theirs = _theirs()
    found: list[str] = []
    for path, tree in _sources(ROOT / "bayeux_trio"):
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                parts = node.module.split(".")
                if parts[0] in LIBRARIES and any(_private(part) for part in parts):
                    found.append(f"{where}:{node.lineno}: from {node.module} import")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] in LIBRARIES and any(_private(part) for part in parts):
                        found.append(f"{where}:{node.lineno}: import {alias.name}")
            elif isinstance(node, ast.Attribute) and node.attr in theirs:
                base = node.value
                if not (isinstance(base, ast.Name) and base.id in ("self", "cls")):
                    found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in theirs
            ):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_private_names_of_h11_wsproto_or_trio() -> None:
    assert _problems() == []


@pytest.mark.parametrize("name", ["_frame_decoder", "_masking_key", "_proto", "_sock"])
def test_the_check_knows_the_names_once_used(name: str) -> None:
    """The private names the server once used are among those checked."""
    assert name in _theirs()


def test_the_fast_path_does_not_import_h11() -> None:
    """It makes the neutral HttpRequest, not h11's events (no hand-made h11.Request)."""
    source = (ROOT / "bayeux_trio" / "server" / "_http_fast.py").read_text()
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert "h11" not in imported
