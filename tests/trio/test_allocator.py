"""``bayeux serve --allocator jemalloc`` and ``--reclaim-after``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from bayeux_trio.cli import _main as _cli
from tests._support.ci import unavailable
from tests._support.processes import until_serving

from .helpers import fail_after, free_port, handshake

ROOT = Path(__file__).resolve().parents[2]
BAYEUX = [sys.executable, "-m", "bayeux_trio"]


def _proc_files(pid: int) -> tuple[str, list[bytes]]:
    """A process's memory map and environment, from /proc."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return maps, Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def _require_jemalloc() -> None:
    if _cli.find_jemalloc() is None:
        unavailable("libjemalloc.so.2 is not installed (apt-get install libjemalloc2)")


@pytest.mark.parametrize(
    ("args", "on_jemalloc"),
    [((), True), (("--allocator", "jemalloc"), True), (("--allocator", "python"), False)],
    ids=["auto", "jemalloc", "python"],
)
@fail_after(30)
async def test_the_allocator_the_server_runs_on(
    args: tuple[str, ...], on_jemalloc: bool, tmp_path: Path
) -> None:
    _require_jemalloc()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "LD_PRELOAD")}
    log = tmp_path / "server.log"
    with log.open("wb") as err:
        process = await trio.lowlevel.open_process(
            [*BAYEUX, "serve", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        await until_serving(port, alive=lambda: process.returncode is None, seconds=20)
        client_id = await handshake(port)
        assert client_id
        # The same process (execve keeps the PID), on jemalloc for every object or not.
        maps, environ = _proc_files(process.pid)
        assert ("libjemalloc.so.2" in maps) is on_jemalloc
        assert (b"PYTHONMALLOC=malloc" in environ) is on_jemalloc
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    expected = "memory allocator: " + ("jemalloc" if on_jemalloc else "python")
    assert expected in log.read_text()


def test_auto_never_replaces_a_caller_s_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # main(argv) called from Python (not as the command) must not execve its caller.
    def refuse(argv: object) -> str | None:
        raise AssertionError("re-executed a caller's process")

    monkeypatch.setattr(_cli, "find_jemalloc", lambda: "/usr/lib/libjemalloc.so.2")
    monkeypatch.setattr(_cli, "_use_jemalloc", refuse)
    with pytest.raises(SystemExit):
        _cli.main(["serve", "--port", "0", "--grace", "-1"])  # refused after the allocator step


def test_a_missing_jemalloc_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_cli, "find_jemalloc", lambda: None)
    monkeypatch.delenv("BAYEUX_ALLOCATOR_EXEC", raising=False)
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    with pytest.raises(SystemExit) as exited:
        _cli.main(["serve", "--port", "0", "--allocator", "jemalloc"])
    assert exited.value.code == 2
    assert "libjemalloc.so.2 not found (apt-get install libjemalloc2)" in capsys.readouterr().err


def test_a_preload_that_did_not_take_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # After one re-execution, a process still not on jemalloc stops instead of looping.
    monkeypatch.setenv("BAYEUX_ALLOCATOR_EXEC", "1")
    monkeypatch.setattr(_cli, "_jemalloc_loaded", lambda: False)
    with pytest.raises(SystemExit):
        _cli.main(["serve", "--port", "0", "--allocator", "jemalloc"])
    assert "jemalloc was preloaded but is not in use" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "expected"), [("0", None), ("50", 50), (None, 500)])
def test_reclaim_after_flag(flag: str | None, expected: int | None) -> None:
    argv = ["serve"] + (["--reclaim-after", flag] if flag is not None else [])
    args = _cli._parser().parse_args(argv)
    assert _cli._config(args).reclaim_after == expected


def test_a_negative_reclaim_after_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _cli.main(["serve", "--port", "0", "--reclaim-after", "-1"])
    assert "reclaim_after must be None or at least 1" in capsys.readouterr().err
