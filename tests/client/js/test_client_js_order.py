"""client.js sends the page's messages in order across a reconnect (issue 18).

``client_order.test.js`` loads ``bayeux_trio/static/client.js`` into a Node.js
vm with a fake clock, XMLHttpRequest and WebSocket, plays the server, and
checks the order of what the client sends: a message waiting to be sent
again holds back later ones (WebSocket and long-polling), long-polling keeps
one request out at a time without holding a connect back, and a message out
on the previous transport holds back later ones. The failover test
(tests/redis/test_failover_order.py) checks the same end to end in Chromium.
Without Node.js >= 20 this is skipped, or fails under
``CI=true``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests._support.ci import require_tool, unavailable

SCRIPT = Path(__file__).resolve().parent / "client_order.test.js"
MIN_NODE = 20  # node:test with --test-reporter, as in tests/interop


def test_client_js_keeps_the_order_of_what_it_sends() -> None:
    node = require_tool("node", "apt-get install nodejs")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE:
        unavailable(f"node {version} is too old (Node.js >= {MIN_NODE} needed)")
    run = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "# fail 0" in run.stdout, run.stdout
    assert "# tests 0" not in run.stdout, run.stdout
