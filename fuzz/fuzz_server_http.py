"""Fuzz target: arbitrary bytes into the server's HTTP connections.

The real :class:`bayeux_trio.BayeuxServer` (hub, engine, ``HttpConnection``)
serves up to four client connections over socketpairs, in one process, under
a mock clock; a well-behaved long-polling client is subscribed before. The
input is split into parts (bytes for one connection, then an EOF, a close or
a clock jump) as ``fuzz/_server_harness.py`` describes, and every invariant
listed there is checked: h11-valid responses with expected statuses, JSON
Bayeux bodies, no leaked client id or endpoint, every connection ends after
its client's EOF, and the well-behaved client still gets its messages.

Run it with ``python fuzz/fuzz_server_http.py -max_total_time=60`` (libFuzzer
flags pass through). See ``fuzz/README.md``.
"""

from __future__ import annotations

import sys

import _server_harness


def test_one_input(data: bytes) -> None:
    """One fuzz input; each invariant is an ``assert``."""
    _server_harness.run(data, websocket_good=False)


if __name__ == "__main__":
    import _runner

    _server_harness.keep_loop()
    _runner.run("server_http", test_one_input, sys.argv, server=True)
