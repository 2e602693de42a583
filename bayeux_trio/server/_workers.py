"""``bayeux serve --workers N``: N processes on one port, one Redis.

Each worker is a whole server (``bayeux serve ... --reuse-port``) whose
listening socket has SO_REUSEPORT, so the kernel spreads new connections over
them. They share sessions through the Redis bus, so a client may land on any
of them. The parent only supervises: it forwards SIGINT/SIGTERM, and restarts
a worker that died (at most once a second).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType

import trio

__all__ = ["open_shared_listeners", "run_workers"]

#: seconds between checks for dead workers
_POLL = 0.2
#: seconds a stopping worker gets beyond its grace period
_EXIT_MARGIN = 5.0


async def open_shared_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Listening sockets with SO_REUSEPORT, for every address ``host`` names."""
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = trio.socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                await sock.bind(address)
                sock.listen(socket.SOMAXCONN)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    return listeners


def run_workers(count: int, argv: list[str], *, grace: float = 5.0) -> int:
    """Run ``count`` copies of ``bayeux <argv>`` sharing the port; returns when stopped.

    Workers run in their own process group, so a Ctrl-C at the terminal
    reaches only this parent, which passes one SIGTERM to each (a worker
    that got both would take the second as "stop now"). Each then has
    ``grace`` seconds, plus a margin, to exit before it is killed. Returns 0
    if every worker exited 0.
    """
    command = [sys.executable, "-m", "bayeux_trio", *argv, "--workers", "1", "--reuse-port"]
    stopping = threading.Event()  # set by the signal handler

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, process_group=0)

    workers: list[subprocess.Popen[bytes]] = []
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        workers.extend(start() for _ in range(count))
        print(f"bayeux: {count} workers: {[w.pid for w in workers]}", file=sys.stderr, flush=True)
        while not stopping.is_set():
            time.sleep(_POLL)
            for index, worker in enumerate(workers):
                if worker.poll() is not None and not stopping.is_set():
                    print(
                        f"bayeux: worker {worker.pid} exited ({worker.returncode}); restarting",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(1.0)
                    if stopping.is_set():
                        break
                    workers[index] = start()
        deadline = time.monotonic() + grace + _EXIT_MARGIN
        for worker in workers:
            try:
                code = worker.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"bayeux: worker {worker.pid} did not exit; killing it", file=sys.stderr)
                worker.kill()
                code = worker.wait()
            if code != 0:
                status = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return status
