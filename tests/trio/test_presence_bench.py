"""bench/presence_bench.py runs end to end at tiny sizes, so that it cannot rot.

Nothing here checks a timing (these machines are noisy): only that every
part runs, that the cycles did what they should (the script itself checks
the joins and leaves each watcher got), and that the JSON holds every part.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests._support.ci import require_tool

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "presence_bench.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("presence_bench", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("presence_bench", module)
    spec.loader.exec_module(module)
    return module


def test_every_part_runs_at_tiny_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load()
    out = tmp_path / "presence.json"
    code = bench.main(
        [
            "--runs", "2", "--watchers", "0,3", "--run-seconds", "0.01",
            "--members", "300", "--channels", "7",
            "--server-watchers", "2", "--server-runs", "2", "--server-seconds", "1",
            "--server-cycles", "20", "--warmup", "5", "--concurrency", "2",
            "--profile", "--profile-seconds", "0.05", "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| 3 | on | " in printed
    assert "presence bytes per member" in printed
    assert "| 2 | memory, on | " in printed
    data = json.loads(out.read_text())
    cases = {(row["watchers"], row["case"]) for row in data["engine"]}
    assert cases == {
        (w, case)
        for w in (0, 3)
        for case in ("off", "on", "on, other channel", "off, joins published by hand")
    }
    assert all(len(row["rates"]) == 2 for row in data["engine"])
    assert data["memory"]["members"] == 300
    assert data["memory"]["on_bytes"] > data["memory"]["off_bytes"]
    servers = {row["name"]: row for row in data["server"]}
    assert set(servers) == {"memory, off", "memory, on"}
    for row in servers.values():
        assert len(row["cycles"]) == 2
        assert all(0 < n <= 20 for n in row["cycles"])
    assert "_presence_event" in data["profile"]


def test_the_server_part_runs_on_redis(tmp_path: Path) -> None:
    # Fails under CI=true without it, as every Redis test (tests/_support/ci.py).
    require_tool("redis-server", "apt-get install redis-server")
    bench = _load()
    out = tmp_path / "presence.json"
    code = bench.main(
        [
            "--parts", "server", "--redis", "--server-watchers", "1", "--server-runs", "1",
            "--server-seconds", "2", "--server-cycles", "10", "--warmup", "3",
            "--concurrency", "2", "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    servers = {row["name"]: row for row in json.loads(out.read_text())["server"]}
    assert set(servers) == {"memory, off", "memory, on", "redis, off", "redis, on"}
    assert all(0 < row["cycles"][0] <= 10 for row in servers.values())
    assert servers["redis, on"]["redis_cpu_us"]
    assert not servers["memory, on"]["redis_cpu_us"]
