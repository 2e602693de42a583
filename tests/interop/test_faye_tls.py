"""The npm faye 1.4.3 client over ``https://`` and ``wss://`` against our server's own TLS.

Our server runs as ``python -m bayeux_trio serve --certfile ... --keyfile ...``
with a certificate for 127.0.0.1 from a throwaway CA (trustme); Node.js is
told to trust that CA with ``NODE_EXTRA_CA_CERTS`` and verifies the
certificate as usual. js/faye_client.js's ``pubsub`` scenario runs over
long-polling (``https://``) and over WebSocket (the faye client turns the
URL into ``wss://``); the ``TransportProbe`` extension reports from the
server's side which transport each connect arrived on.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests._support.processes import stop_process, wait_listening

from ._support import HANDSHAKE, MOUNT, REPO_ROOT, TIMEOUT, ServerProcess, free_port, of, run_node

START_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _https_handshake(port: int, context: ssl.SSLContext) -> bool:
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=1.0, context=context)
    try:
        connection.request(
            "POST",
            MOUNT,
            body=json.dumps([HANDSHAKE]),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        replies = json.loads(response.read())
    except (OSError, ValueError):
        return False
    finally:
        connection.close()
    return response.status == 200 and replies[0].get("successful") is True


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Our server on HTTPS only, with the probe extension."""
    folder = tmp_path_factory.mktemp("tls-server")
    issued = ca.issue_cert("127.0.0.1")
    certfile, keyfile = folder / "chain.pem", folder / "key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    keyfile.write_bytes(issued.private_key_pem.bytes())
    log = folder / "server.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
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
        "--certfile",
        str(certfile),
        "--keyfile",
        str(keyfile),
        "--extension",
        "tests.interop.auth_ext:TransportProbe",
        "--log-level",
        "debug",
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = ServerProcess("bayeux-trio server (TLS)", process, log, port)
    try:
        wait_listening(port, timeout=START_TIMEOUT, process=process)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        deadline = time.monotonic() + START_TIMEOUT
        while not _https_handshake(port, context):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the TLS server did not answer an HTTPS handshake; log:\n{server.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.05)
        yield server
    finally:
        stop_process(process)


@pytest.fixture
def trusting_node(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node.js trusts the test CA (and only the node runs see the variable)."""
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(pem))


@pytest.mark.usefixtures("trusting_node")
@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_faye_client_over_tls(
    node_modules: Path, tls_server: ServerProcess, transport: str
) -> None:
    url = f"https://127.0.0.1:{tls_server.port}{MOUNT}"
    channel = f"/interop/tls/{transport}"
    options = {"channel": channel}
    if transport == "long-polling":
        options["transport"] = "long-polling"  # client.disable('websocket')
    events = run_node(
        node_modules, "faye_client.js", ["pubsub", url, json.dumps(options)], server=tls_server
    )
    messages = of(events, "message")
    assert sorted((m["subscription"], m["channel"], m["data"]["n"]) for m in messages) == [
        ("/chat/**", "/chat/room/42", 2),
        (channel, channel, 1),
    ]
    (chosen,) = of(events, "transport")
    assert chosen["subscriber"] == chosen["publisher"] == transport
    # From the server's side: the last connect of each client came over the
    # transport asked for (over TLS: nothing else listens on this port).
    expected = "websocket" if transport == "websocket" else "http"
    for client in ("subscriber", "publisher"):
        reports = [
            (e["ext"] or {}).get("transport") for e in of(events, "connect_reply", client=client)
        ]
        assert reports, f"{client}: no successful /meta/connect reply seen"
        assert reports[-1] == expected, (client, reports)


def test_the_tls_port_speaks_no_plain_http(tls_server: ServerProcess) -> None:
    """A plain-HTTP client gets no answer; the server goes on serving HTTPS."""
    connection = http.client.HTTPConnection("127.0.0.1", tls_server.port, timeout=5.0)
    try:
        connection.request("POST", MOUNT, body=json.dumps([HANDSHAKE]))
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.getresponse()
    finally:
        connection.close()
    assert tls_server.process.poll() is None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only: does it still answer?
    assert _https_handshake(tls_server.port, context)
