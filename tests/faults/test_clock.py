"""Clock jumps: the engine and the server run on monotonic time only.

The engine is given ``now`` by the server, which takes it from trio's
monotonic clock; the wall clock (``time.time``, ``datetime.now``...) may jump
either way (NTP steps, a VM resumed, an operator) and must not shorten or
stretch a held connect or a session's life. Two checks: no wall-clock call in
the code outside of the places listed below (log stamps, HTTP dates,
timesync answers, reported timestamps), and a session kept alive and
served while ``time.time`` jumps by a year each call.
"""

from __future__ import annotations

import ast
import itertools
import time
from pathlib import Path

import pytest
import trio

from tests.trio.helpers import LongPoller, deliveries, fail_after, make_config, start_server

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bayeux_core", "bayeux_trio")

#: (module path, function) -> why a wall-clock reading is right there
ALLOWED = {
    # Last-Modified / If-Modified-Since of static files: HTTP dates are wall-clock
    ("bayeux_trio/server/_static.py", "last_modified"): "HTTP date header",
    # Log lines are stamped with the wall-clock time, for people reading them
    ("bayeux_trio/ops/_logging.py", "format"): "log timestamp",
    # Timesync (CometD's extension) tells clients the server's wall-clock time
    ("bayeux_trio/server/_wallclock.py", "wall_clock_ms"): "timesync answer",
    # The Redis outage start shown in health stats, for people reading them
    ("bayeux_trio/redis/_bus.py", "stats"): "reported timestamp",
    ("bayeux_trio/redis/_bus.py", "_down"): "reported timestamp",
    ("bayeux_trio/redis/_bus.py", "_up"): "logged outage length",
    # The admin API's /stats: its time, start time and history samples are
    # Unix times, for the console's people and charts (rates: the monotonic clock)
    ("bayeux_trio/ops/_stats.py", "wall_time"): "reported timestamps",
}
#: attribute calls that read the wall clock
WALL_CLOCK = {
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "localtime"),
    ("time", "gmtime"),
    ("time", "ctime"),
    ("time", "strftime"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("utils", "formatdate"),
}
#: names that, imported bare (``from time import time``), read the wall clock
BARE = {"time", "time_ns", "localtime", "gmtime", "ctime", "formatdate"}


def _wall_clock_calls(path: Path) -> list[tuple[str, int, str]]:
    """(function, line, call) for every wall-clock call in one module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    imported_bare = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime", "email.utils")
        for alias in node.names
        if alias.name in BARE
    }
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = child.name
            if isinstance(child, ast.Call):
                func = child.func
                if isinstance(func, ast.Attribute):
                    owner = func.value
                    owner_name = (
                        owner.id
                        if isinstance(owner, ast.Name)
                        else owner.attr
                        if isinstance(owner, ast.Attribute)
                        else ""
                    )
                    if (owner_name, func.attr) in WALL_CLOCK:
                        found.append((name, child.lineno, f"{owner_name}.{func.attr}"))
                elif isinstance(func, ast.Name) and func.id in imported_bare:
                    found.append((name, child.lineno, func.id))
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_no_wall_clock_outside_the_listed_places() -> None:
    offending = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            for function, line, call in _wall_clock_calls(path):
                if (module, function) not in ALLOWED:
                    offending.append(f"{module}:{line} {call}() in {function}")
    assert not offending, "wall-clock reads (use trio.current_time()):\n" + "\n".join(offending)


def test_the_scan_finds_wall_clock_calls(tmp_path: Path) -> None:
    """The scanner itself: each way of reading the wall clock is caught."""
    module = tmp_path / "m.py"
    module.write_text(
        "import time, datetime\n"
        "from time import time as now\n"
        "def a():\n    return time.time()\n"
        "def b():\n    return datetime.datetime.now()\n"
        "def c():\n    return now()\n"
        "def d():\n    return time.monotonic()\n"
    )
    calls = [(function, call) for function, _, call in _wall_clock_calls(module)]
    assert calls == [("a", "time.time"), ("b", "datetime.now"), ("c", "now")]


@fail_after(30)
async def test_wall_clock_jumps_do_not_expire_or_release_anything(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held connects end at their timeout and the session lives on, while the
    wall clock jumps a year forward and back on every reading."""
    real = time.time
    jumps = itertools.cycle([365 * 86400.0, -365 * 86400.0, 0.0])
    monkeypatch.setattr(time, "time", lambda: real() + next(jumps))
    monkeypatch.setattr(time, "time_ns", lambda: int((real() + next(jumps)) * 1e9))
    from bayeux_core import EngineConfig

    server = await start_server(
        nursery, make_config(engine=EngineConfig(timeout=0.3, session_timeout=0.5))
    )
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start("/tick")
    # Several holds, each ended by the timeout, with the session alive throughout.
    for _ in range(4):
        (reply,) = await poller.connect()
        assert reply["successful"] is True
        assert reply["advice"]["reconnect"] == "retry"
    server.publish("/tick", "still here")
    assert deliveries(await poller.connect()) == [{"channel": "/tick", "data": "still here"}]
    assert server.engine.store.get(poller.client_id) is not None
