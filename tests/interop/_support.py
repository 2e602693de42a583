"""Plumbing for the interop tests: npm packages, server subprocesses, node runs.

Third-party peers (the npm ``faye`` client and server, the npm ``cometd``
client) are installed with npm into a cache folder outside the source tree,
``~/.cache/bayeux-trio/npm/<key>/node_modules``, where ``<key>`` is a digest
of ``tests/interop/package.json`` and ``package-lock.json``: changing a pin
makes a fresh install, and an unchanged list reuses the cached one. Set
``BAYEUX_NPM_CACHE`` to use another cache folder.

When node or npm is missing or the install fails, the tests are skipped, or
fail when the environment variable ``CI`` is ``true`` (CI must run them): the
rule of :mod:`tests._support.ci`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests._support.ci import unavailable
from tests._support.ports import free_port
from tests._support.processes import (
    HANDSHAKE,
    MOUNT,
    START_TIMEOUT,
    post_json,
    stop_process,
    wait_listening,
    wait_serving,
)

__all__ = [
    "HANDSHAKE",
    "JS_DIR",
    "MOUNT",
    "REPO_ROOT",
    "TIMEOUT",
    "RawWebSocket",
    "ServerProcess",
    "ensure_node_modules",
    "free_port",
    "of",
    "post_json",
    "raw_request",
    "run_node",
    "running",
    "start_faye_server",
    "start_our_server",
]

INTEROP_DIR = Path(__file__).resolve().parent
JS_DIR = INTEROP_DIR / "js"
REPO_ROOT = INTEROP_DIR.parents[1]
PACKAGE_JSON = INTEROP_DIR / "package.json"
PACKAGE_LOCK = INTEROP_DIR / "package-lock.json"

TIMEOUT = 25  # seconds a /meta/connect is held, on both servers
MIN_NODE = 20  # the lock file's dependencies (agent-base 9) want Node >= 20
INSTALL_TIMEOUT = 300.0


def _peers_unavailable(reason: str) -> NoReturn:
    """A third-party peer is missing: skip, or fail under ``CI=true``."""
    unavailable(f"interop peers unavailable: {reason}")


# --------------------------------------------------------------------- npm


def pinned_packages() -> dict[str, str]:
    """The npm packages the tests need, name -> exact version."""
    manifest = json.loads(PACKAGE_JSON.read_text())
    pins: dict[str, str] = manifest["dependencies"]
    for name, version in pins.items():
        if not re.fullmatch(r"\d+\.\d+\.\d+", version):
            raise AssertionError(f"{PACKAGE_JSON}: pin {name} to an exact version, not {version}")
    return pins


def cache_root() -> Path:
    configured = os.environ.get("BAYEUX_NPM_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bayeux-trio" / "npm"


def cache_key() -> str:
    digest = hashlib.sha256()
    for path in (PACKAGE_JSON, PACKAGE_LOCK):
        if path.exists():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def installed_versions(node_modules: Path, names: Sequence[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            manifest = json.loads((node_modules / name / "package.json").read_text())
            found[name] = str(manifest.get("version"))
        except (OSError, ValueError):
            found[name] = None
    return found


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _peers_unavailable(f"{name} is not on PATH (install Node.js >= {MIN_NODE} with npm)")
    return path


def _check_node(node: str) -> None:
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        _peers_unavailable(f"`node --version` failed: {exc}")
    match = re.match(r"v(\d+)\.", out)
    if match is None or int(match.group(1)) < MIN_NODE:
        _peers_unavailable(f"Node.js >= {MIN_NODE} is needed, found {out!r}")


def ensure_node_modules() -> Path:
    """The node_modules folder holding the pinned packages, installed if missing."""
    node = _tool("node")
    npm = _tool("npm")
    _check_node(node)
    pins = pinned_packages()
    target = cache_root() / cache_key()
    node_modules = target / "node_modules"
    if installed_versions(node_modules, list(pins)) == pins:
        return node_modules

    # Install next to the target, then rename into place: a concurrent run
    # or an interrupted install never leaves a half-filled folder behind.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        shutil.copy2(PACKAGE_JSON, staging / "package.json")
        command = [npm, "install"]
        if PACKAGE_LOCK.exists():
            shutil.copy2(PACKAGE_LOCK, staging / "package-lock.json")
            command = [npm, "ci"]
        command += ["--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            result = subprocess.run(
                command,
                cwd=staging,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _peers_unavailable(f"`{' '.join(command)}` took more than {INSTALL_TIMEOUT:.0f} s")
        except OSError as exc:
            _peers_unavailable(f"`{' '.join(command)}` could not run: {exc}")
        if result.returncode != 0:
            _peers_unavailable(
                f"`{' '.join(command)}` in {staging} failed ({result.returncode}):\n"
                f"{result.stderr[-2000:]}"
            )
        got = installed_versions(staging / "node_modules", list(pins))
        if got != pins:
            _peers_unavailable(f"npm installed {got}, expected {pins}")
        try:
            staging.rename(target)
        except OSError:
            # Another run finished first; use its copy if it is complete.
            if installed_versions(node_modules, list(pins)) != pins:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return node_modules


# ------------------------------------------------------------------ servers


@dataclass
class ServerProcess:
    """A Bayeux server running in a subprocess on loopback."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{MOUNT}"

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        stop_process(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()


def raw_request(
    port: int,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; (status, lower-cased headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


class RawWebSocket:
    """A blocking WebSocket client (wsproto) for sending hand-written frames."""

    def __init__(self, port: int, target: str = MOUNT, *, timeout: float = 5.0) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._messages: list[str] = []
        self._parts: list[str] = []
        self.closed = False
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{port}", target=target)))
        deadline = time.monotonic() + timeout
        while True:
            for event in self._pump(deadline):
                if isinstance(event, AcceptConnection):
                    return
                raise AssertionError(f"WebSocket upgrade refused: {event!r}")

    def _pump(self, deadline: float) -> Sequence[object]:
        """Read once (until ``deadline``) and return the events parsed."""
        from wsproto.events import CloseConnection, Ping, TextMessage

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        events = list(self.ws.events())
        for event in events:
            if isinstance(event, Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.closed = True
            elif isinstance(event, TextMessage):
                self._parts.append(event.data)
                if event.message_finished:
                    self._messages.append("".join(self._parts))
                    self._parts.clear()
        if not data:
            self.closed = True
        return events

    def send(self, text: str) -> None:
        from wsproto.events import TextMessage

        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def receive(self, timeout: float = 5.0) -> str | None:
        """The next text message, or None if none comes within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._messages:
            if self.closed:
                return None
            try:
                self._pump(deadline)
            except (TimeoutError, OSError):
                return None
        return self._messages.pop(0)

    def close(self) -> None:
        self.sock.close()


def _wait_for_handshake(server: ServerProcess, deadline: float) -> None:
    last = wait_serving(server.process, server.port, deadline=deadline)
    if last is None:
        return
    server.stop()
    pytest.fail(
        f"{server.name} did not answer a handshake (last: {last!r}); "
        f"exit code {server.process.returncode}; log:\n{server.log_tail()}",
        pytrace=False,
    )


def start_our_server(log: Path, extra_args: Sequence[str] = ()) -> ServerProcess:
    """``python -m bayeux_trio serve`` on a free loopback port, answering handshakes.

    The working directory is the repository root, so that extensions in
    ``tests.interop`` can be loaded with ``--extension``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for attempt in range(3):
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "bayeux_trio",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--mount",
            MOUNT,
            "--timeout",
            str(TIMEOUT),
            *extra_args,
        ]
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        server = ServerProcess("bayeux-trio server", process, log, port)
        deadline = time.monotonic() + START_TIMEOUT
        # The port may have been taken between free_port() and the bind.
        wait_listening(port, timeout=START_TIMEOUT, process=process)
        if process.poll() is not None and attempt < 2 and "cannot listen" in server.log_tail():
            continue
        _wait_for_handshake(server, deadline)
        return server
    raise AssertionError("unreachable")


def start_faye_server(
    node_modules: Path, log: Path, script: Path = JS_DIR / "faye_server.js"
) -> ServerProcess:
    """The stock Faye 1.4.3 ``NodeAdapter`` (js/faye_server.js) on a free port.

    ``script`` may name another server script that takes the same arguments
    and prints the same ``{"event": "listening", "port": N}`` line.
    """
    env = dict(os.environ, NODE_PATH=str(node_modules))
    with log.open("ab") as err:
        process = subprocess.Popen(
            ["node", str(script), MOUNT, str(TIMEOUT)],
            cwd=JS_DIR,
            env=env,
            stdin=subprocess.PIPE,  # the script exits when this closes
            stdout=subprocess.PIPE,
            stderr=err,
        )
    server = ServerProcess("Faye 1.4.3 server", process, log)
    deadline = time.monotonic() + START_TIMEOUT
    assert process.stdout is not None
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    try:
        server.port = int(json.loads(line)["port"])
    except (ValueError, KeyError, TypeError):
        server.stop()
        pytest.fail(
            f"the Faye server did not report its port (got {line!r}); log:\n{server.log_tail()}",
            pytrace=False,
        )
    _wait_for_handshake(server, deadline)
    return server


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- node runs


def run_node(
    node_modules: Path,
    script: str,
    args: Sequence[str],
    *,
    timeout: float = 30.0,
    server: ServerProcess | None = None,
) -> list[dict[str, Any]]:
    """Run ``js/<script>`` and return the JSON lines it printed.

    The run must end with ``{"event": "done"}``; anything else (a non-zero
    exit, a timeout, an ``error`` event) fails the test with the script's
    output and the server's log.
    """
    env = dict(os.environ, NODE_PATH=str(node_modules))
    env.pop("http_proxy", None)
    env.pop("HTTP_PROXY", None)
    command = ["node", str(JS_DIR / script), *args]
    try:
        result = subprocess.run(
            command,
            cwd=JS_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        stdout, stderr, code = result.stdout, result.stderr, result.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = _text(exc.stdout)
        stderr = _text(exc.stderr)
        code = None
    events = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    if code != 0 or not events or events[-1].get("event") != "done":
        outcome = f"timed out after {timeout} s" if code is None else f"exit code {code}"
        log = f"\n--- {server.name} log ---\n{server.log_tail()}" if server is not None else ""
        pytest.fail(
            f"{script} {' '.join(args)}: {outcome}\n--- stdout ---\n{stdout[-4000:]}\n"
            f"--- stderr ---\n{stderr[-4000:]}{log}",
            pytrace=False,
        )
    return events


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def of(events: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    """The events of one kind whose fields match ``match``."""
    return [
        e for e in events if e.get("event") == kind and all(e.get(k) == v for k, v in match.items())
    ]
