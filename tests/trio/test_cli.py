"""The ``bayeux`` command line, run as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import bayeux_core
from bayeux_trio import ServerConfig
from bayeux_trio.cli import _main as _cli
from tests._support.processes import until_serving

from .ext_module import TOKEN
from .helpers import HOST, LongPoller, bayeux, fail_after, free_port, handshake, wait_for
from .test_allocator import _require_jemalloc

ROOT = Path(__file__).resolve().parents[2]
BAYEUX = [sys.executable, "-m", "bayeux_trio"]


async def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [*BAYEUX, *args], cwd=ROOT, capture_stdout=True, capture_stderr=True, check=False
    )


async def _wait_until_serving(port: int, process: trio.Process, mount: str) -> None:
    """Poll until the server answers a handshake (bounded)."""
    await until_serving(port, alive=lambda: process.returncode is None, seconds=15, path=mount)


class _Server:
    def __init__(self, process: trio.Process, port: int) -> None:
        self.process = process
        self.port = port


async def _start(nursery: trio.Nursery, *args: str, mount: str = "/faye") -> _Server:
    port = free_port()
    process = await trio.lowlevel.open_process(
        [*BAYEUX, "serve", "--port", str(port), "--mount", mount, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def reap() -> None:
        try:
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()

    nursery.start_soon(reap)
    await _wait_until_serving(port, process, mount)
    return _Server(process, port)


@fail_after(20)
async def test_help() -> None:
    result = await _run("serve", "--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for option in ("--port", "--mount", "--timeout", "--extension", "--host", "--static"):
        assert option in text


@fail_after(20)
async def test_sigterm_stops_cleanly(nursery: trio.Nursery) -> None:
    server = await _start(nursery)
    client = LongPoller(server.port)
    await client.start("/x")
    server.process.send_signal(signal.SIGTERM)
    with trio.fail_after(5):
        returncode = await server.process.wait()
    assert returncode == 0
    with pytest.raises(OSError, match="connect"):
        await handshake(server.port)


@fail_after(20)
async def test_sigterm_answers_a_held_connect(nursery: trio.Nursery) -> None:
    server = await _start(nursery, "--timeout", "60")
    client = LongPoller(server.port)
    await client.start("/x")
    results: list[list[dict[str, Any]]] = []

    async def connect() -> None:
        results.append(await client.connect())

    async with trio.open_nursery() as inner:
        # Two connects of one client: the server answers the older at once when
        # the newer arrives, so once one reply is back the other is held.
        inner.start_soon(connect)
        inner.start_soon(connect)
        await wait_for(lambda: len(results) == 1)
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await server.process.wait() == 0
    assert len(results) == 2
    for (reply,) in results:
        assert reply["successful"] is True
        assert reply["advice"]["reconnect"] == "retry"


@fail_after(20)
async def test_extension_by_name(nursery: trio.Nursery) -> None:
    server = await _start(nursery, "--extension", "tests.trio.ext_module:Auth", mount="/bayeux")
    client_id = await handshake(server.port, mount="/bayeux")

    async def subscribe(ext: Any) -> dict[str, Any]:
        message = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/a"}
        if ext is not None:
            message["ext"] = ext
        (reply,) = await bayeux(server.port, [message], mount="/bayeux")
        return reply

    for bad in (None, {"token": "wrong"}, {"token": TOKEN.upper()}, "let-me-in"):
        reply = await subscribe(bad)
        assert reply["successful"] is False
        assert reply["error"] == "403::Invalid token"
    assert (await subscribe({"token": TOKEN}))["successful"] is True
    server.process.send_signal(signal.SIGTERM)
    with trio.fail_after(5):
        assert await server.process.wait() == 0


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no_colon", "not of the form module:attribute"),
        ("no_such_module_xyz:Auth", "cannot import 'no_such_module_xyz'"),
        ("tests.trio.ext_module:Missing", "has no attribute 'Missing'"),
        ("tests.trio.ext_module:NOT_AN_EXTENSION", "not an extension"),
        ("tests.trio.ext_module:broken_factory", "not an extension"),
        (":Auth", "not of the form module:attribute"),
        ("tests.trio.ext_module:NeedsArguments", "cannot call"),
    ],
)
@fail_after(20)
async def test_bad_extension_spec(spec: str, reason: str) -> None:
    result = await _run("serve", "--port", str(free_port()), "--extension", spec)
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "error:" in stderr
    assert reason in stderr
    assert "Traceback" not in stderr


@fail_after(20)
async def test_bad_option_values() -> None:
    for args in (["--port", "70000"], ["--mount", "faye"], ["--ping", "0"]):
        result = await _run("serve", *args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr.decode()


@fail_after(20)
async def test_port_in_use(nursery: trio.Nursery) -> None:
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    try:
        port = listeners[0].socket.getsockname()[1]
        result = await _run("serve", "--port", str(port))
        assert result.returncode == 1
        assert "cannot listen" in result.stderr.decode()
    finally:
        for listener in listeners:
            await listener.aclose()


# ------------------------------------------------------------- issue 14 items


@fail_after(20)
async def test_version() -> None:
    result = await _run("--version")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == f"bayeux {bayeux_core.__version__}\n"


def _one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text
    (line,) = text.splitlines()
    return line


@fail_after(20)
async def test_a_missing_static_directory_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    a_file = tmp_path / "file.html"
    a_file.write_text("<p>not a directory</p>")
    for path in (missing, a_file):
        result = await _run("serve", "--port", str(free_port()), "--static", str(path))
        assert result.returncode == 2
        line = _one_line(result.stderr)
        assert line.startswith("bayeux: ")
        assert f"--static {path}" in line
        assert "not a directory" in line


async def _run_without(module: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``bayeux ARGS`` in a process where ``import MODULE`` fails, as when not installed."""
    script = (
        "import sys\n"
        f"sys.modules[{module!r}] = None\n"
        "from bayeux_trio.cli._main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return await trio.run_process(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "args", "extra"),
    [
        ("coredis", ("--engine", "redis://:secret@127.0.0.1:1/0"), "redis"),
        ("coredis", ("--engine", "redis+cluster://127.0.0.1:1"), "redis"),
        ("prometheus_client", ("--metrics-path", "/metrics"), "metrics"),
    ],
)
@fail_after(20)
async def test_a_missing_extra_says_which_to_install(
    module: str, args: tuple[str, ...], extra: str
) -> None:
    result = await _run_without(module, "serve", "--port", str(free_port()), *args)
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line.startswith("bayeux: ")
    assert args[0] in line
    assert "secret" not in line
    assert f"install the {extra} extra: pip install '.[{extra}]' in a clone of bayeux-trio" in line
    assert "bayeux-trio[" not in line


def test_the_config_s_metrics_message_names_the_extra_not_a_registry_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ValueError, match="metrics_path needs prometheus_client") as caught:
        ServerConfig(metrics_path="/metrics")
    message = str(caught.value)
    assert (
        "install the metrics extra: pip install '.[metrics]' in a clone of bayeux-trio" in message
    )
    assert "bayeux-trio[" not in message


def _write_app(directory: Path) -> None:
    """A package ``myapp`` in ``directory``, as docs/server.md's extension example."""
    package = directory / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "auth.py").write_text(
        "from bayeux_core import Extension\n"
        "\n"
        "\n"
        "class ServerAuth(Extension):\n"
        "    def incoming(self, message, context):\n"
        "        if message.get('channel') == '/meta/subscribe':\n"
        "            message['error'] = '403::from myapp'\n"
        "        return message\n"
    )


@pytest.mark.parametrize("allocator", ["python", "jemalloc"])
@fail_after(30)
async def test_an_extension_from_the_current_directory(allocator: str, tmp_path: Path) -> None:
    # The installed `bayeux` script, as a user runs it (not `python -m`, which
    # would put the current directory on sys.path by itself).
    if allocator == "jemalloc":
        _require_jemalloc()
    script = Path(sys.executable).parent / "bayeux"
    assert script.exists()
    _write_app(tmp_path)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONMALLOC", "LD_PRELOAD", "PYTHONPATH", "BAYEUX_ALLOCATOR_EXEC")
    }
    command = [str(script), "serve", "--port", str(port), "--allocator", allocator]
    log = tmp_path / "server.log"
    with log.open("wb") as err:
        process = await trio.lowlevel.open_process(
            [*command, "--extension", "myapp.auth:ServerAuth"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        await until_serving(
            port, alive=lambda: process.returncode is None, seconds=20, describe=log.read_text
        )
        client_id = await handshake(port)
        message = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/a"}
        (reply,) = await bayeux(port, [message])
        assert reply["successful"] is False
        assert reply["error"] == "403::from myapp"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert f"memory allocator: {allocator}" in log.read_text()


@fail_after(30)
async def test_the_start_up_line_gives_the_page_s_url(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>demo</p>")
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as err:
        process = await trio.lowlevel.open_process(
            [*BAYEUX, "serve", "--port", str(port), "--static", str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        await _wait_until_serving(port, process, "/faye")
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    (line,) = [line for line in log.read_text().splitlines() if "serving Bayeux at" in line]
    words = line.replace(",", " ").replace(";", " ").split()
    assert f"http://{HOST}:{port}/faye" in words
    assert f"http://{HOST}:{port}/" in words


def test_session_timeout_defaults_to_the_engine_s_rule() -> None:
    args = _cli._parser().parse_args(["serve", "--timeout", "10"])
    engine = _cli._config(args).engine
    assert engine.session_timeout is None
    assert engine.session_expiry == 20.0  # Faye's rule: twice the timeout
    args = _cli._parser().parse_args(["serve", "--session-timeout", "45"])
    assert _cli._config(args).engine.session_timeout == 45.0


def test_max_batch_option() -> None:
    args = _cli._parser().parse_args(["serve"])
    assert _cli._config(args).engine.max_batch is None
    args = _cli._parser().parse_args(["serve", "--max-batch", "50"])
    assert _cli._config(args).engine.max_batch == 50


@fail_after(20)
async def test_a_bad_max_batch_is_refused() -> None:
    result = await _run("serve", "--port", str(free_port()), "--max-batch", "0")
    assert result.returncode == 2
    assert "max_batch" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


@fail_after(30)
@pytest.mark.parametrize("policy", ["serving", "python"])
async def test_the_gc_policy_is_applied_once_serving(policy: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:
        process = await trio.lowlevel.open_process(
            [*BAYEUX, "serve", "--port", str(port), "--log-level", "info", "--gc", policy],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            await _wait_until_serving(port, process, "/faye")
            await wait_for(lambda: "garbage collection" in log.read_text(), attempts=200)
        finally:
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await process.wait()
    text = log.read_text()
    if policy == "serving":
        assert "garbage collection: serving (" in text, text
    else:
        assert "garbage collection: python (CPython's defaults)" in text, text
