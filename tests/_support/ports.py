"""Loopback only: the address every test server listens on, and free ports."""

from __future__ import annotations

import socket

__all__ = ["HOST", "free_port", "listening_sockets"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A port that was free a moment ago (for subprocesses, which cannot report theirs).

    Another process may take it before the subprocess binds it: callers that
    can, retry on a "cannot listen" failure.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def listening_sockets(port: int) -> int:
    """How many sockets listen on TCP ``port`` on this machine (Linux: /proc/net/tcp*).

    Processes sharing a port with SO_REUSEPORT each have their own.
    """
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)  # the header
                for row in rows:
                    fields = row.split()
                    local, state = fields[1], fields[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        count += 1
        except OSError:
            continue
    return count
