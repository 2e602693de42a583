"""The server's own TLS: ``ServerConfig(certfile=..., keyfile=...)``, ``--certfile``/``--keyfile``.

A throwaway CA (trustme) signs a certificate for 127.0.0.1. Our client talks
to the server over ``https://`` and ``wss://``; raw requests (h11 and wsproto
over ``trio.SSLStream``) check what is on the wire; a client that never
finishes its handshake, and one that speaks plain HTTP to the TLS port, are
closed without harm to the others. The npm faye client over TLS is in
``tests/interop/test_faye_tls.py``.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing
import trustme
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from bayeux_trio import BayeuxServer, open_client
from bayeux_trio.cli._main import main
from bayeux_trio.server import ServerConfig
from bayeux_trio.server._connection import serve_connection

from .helpers import (
    HANDSHAKE,
    HOST,
    HttpClient,
    WsClient,
    fail_after,
    make_config,
    raw_exchange,
    start_server,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A PEM chain (the server's certificate first) and its key, for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    issued = ca.issue_cert(HOST)
    certfile, keyfile = folder / "chain.pem", folder / "key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    keyfile.write_bytes(issued.private_key_pem.bytes())
    return certfile, keyfile


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def tls_config(cert_files: tuple[Path, Path], **kwargs: Any) -> ServerConfig:
    certfile, keyfile = cert_files
    return make_config(certfile=certfile, keyfile=keyfile, **kwargs)


async def open_tls(port: int, ca: trustme.CA, alpn: list[str] | None = None) -> trio.SSLStream[Any]:
    context = trusting(ca)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    tcp = await trio.open_tcp_stream(HOST, port)
    stream = trio.SSLStream(tcp, context, server_hostname=HOST, https_compatible=True)
    await stream.do_handshake()
    return stream


async def post(client: HttpClient, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.request(
        "POST", "/faye", headers=[("content-type", "application/json")], body=orjson.dumps(messages)
    )
    assert response.status == 200, response
    replies: list[dict[str, Any]] = response.json()
    return replies


# ------------------------------------------------------------- our client


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
@fail_after(20)
async def test_our_client_over_https_and_wss(
    nursery: trio.Nursery, ca: trustme.CA, cert_files: tuple[Path, Path], transport: str
) -> None:
    server = await start_server(nursery, tls_config(cert_files))
    assert server.url == f"https://{HOST}:{server.port}/faye"
    for url in (server.url, server.url.replace("https://", "wss://")):
        async with open_client(
            url, transports=[transport], ssl_context=trusting(ca), retry=0.05
        ) as alice:
            async with alice.subscribe("/secure") as subscription:
                await alice.publish("/secure", {"over": "tls"})
                assert (await subscription.receive()).data == {"over": "tls"}
            assert alice.transport == transport


# ------------------------------------------------------------ on the wire


@fail_after(20)
async def test_https_requests_and_alpn(
    nursery: trio.Nursery, ca: trustme.CA, cert_files: tuple[Path, Path]
) -> None:
    server = await start_server(nursery, tls_config(cert_files))
    assert server.port is not None
    stream = await open_tls(server.port, ca, alpn=["h2", "http/1.1"])
    assert stream.selected_alpn_protocol() == "http/1.1"
    async with HttpClient(stream, server.port) as client:  # type: ignore[arg-type]
        (reply,) = await post(client, [HANDSHAKE])
        client_id = reply["clientId"]
        # Several requests on one kept-alive TLS connection, and a GET.
        connect = {
            "channel": "/meta/connect",
            "clientId": client_id,
            "connectionType": "long-polling",
        }
        (connected,) = await post(client, [connect])
        assert connected["successful"] is True
        health = await client.request("GET", "/health")
        assert health.status == 200


@fail_after(20)
async def test_a_wsproto_websocket_over_tls(
    nursery: trio.Nursery, ca: trustme.CA, cert_files: tuple[Path, Path]
) -> None:
    server = await start_server(nursery, tls_config(cert_files))
    assert server.port is not None
    stream = await open_tls(server.port, ca)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host=f"{HOST}:{server.port}", target="/faye")))
    async with WsClient(stream, ws) as client:  # type: ignore[arg-type]
        assert isinstance(await client.receive(), AcceptConnection)
        await client.send_json([{**HANDSHAKE, "supportedConnectionTypes": ["websocket"]}])
        (reply,) = await client.receive_json()
        client_id = reply["clientId"]
        subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/t"}
        await client.send_json([subscribe])
        (subscribed,) = await client.receive_json()
        assert subscribed["successful"] is True
        connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}
        await client.send_json([connect])
        (connected,) = await client.receive_json()
        assert connected["successful"] is True
        # Deliveries the hub flushes go through the stream's writer.
        for n in range(50):
            server.publish("/t", {"n": n, "pad": "x" * 1000})
        got: list[int] = []
        for _ in range(100):
            if len(got) == 50:
                break
            got += [m["data"]["n"] for m in await client.receive_json()]
        assert got == list(range(50))
        await client.close()
        await client.expect_eof()


# ---------------------------------------------------- clients that misbehave


async def test_an_unfinished_handshake_is_closed_at_the_header_timeout(
    autojump_clock: trio.testing.MockClock, cert_files: tuple[Path, Path]
) -> None:
    """Over memory streams: the handshake counts against the header timeout."""
    config = tls_config(cert_files, header_timeout=4.0, idle_timeout=100.0)
    server = BayeuxServer(config)
    context = config.ssl_context()
    assert context is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(server.hub.run)
        for hello in (b"", b"\x16\x03\x01\x02\x00\x01"):  # nothing; half a ClientHello
            client, ours = trio.testing.memory_stream_pair()
            ended = trio.Event()

            async def serve(ours: trio.abc.Stream = ours, ended: trio.Event = ended) -> None:
                await serve_connection(server, ours, ssl_context=context)
                ended.set()

            start = trio.current_time()
            nursery.start_soon(serve)
            if hello:
                await client.send_all(hello)
            await ended.wait()
            assert trio.current_time() - start == pytest.approx(4.0)
            assert await client.receive_some(100) == b""
        nursery.cancel_scope.cancel()


@fail_after(20)
async def test_a_silent_tls_client_is_closed(
    nursery: trio.Nursery, cert_files: tuple[Path, Path]
) -> None:
    """The same through the server's accept loop (a short header timeout)."""
    server = await start_server(nursery, tls_config(cert_files, header_timeout=0.2))
    assert server.port is not None
    async with await trio.open_tcp_stream(HOST, server.port) as silent:
        assert await silent.receive_some(100) == b""


@fail_after(20)
async def test_plain_http_on_the_tls_port_is_closed_and_harms_no_one(
    nursery: trio.Nursery, ca: trustme.CA, cert_files: tuple[Path, Path]
) -> None:
    server = await start_server(nursery, tls_config(cert_files))
    assert server.port is not None
    # A TLS client waits in a held connect meanwhile.
    client = HttpClient(await open_tls(server.port, ca), server.port)  # type: ignore[arg-type]
    (reply,) = await post(client, [HANDSHAKE])
    client_id = reply["clientId"]
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/p"}
    await post(client, [subscribe])
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    await post(client, [connect])
    async with trio.open_nursery() as inner:
        held: list[list[dict[str, Any]]] = []

        async def wait_held() -> None:
            held.append(await post(client, [connect]))

        inner.start_soon(wait_held)
        body = orjson.dumps([HANDSHAKE])
        plain = (
            b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        answer = await raw_exchange(server.port, plain)
        assert not answer.startswith(b"HTTP/")  # no plaintext answer, just the close
        server.publish("/p", {"still": "here"})
    (replies,) = held
    assert [m["data"] for m in replies if m["channel"] == "/p"] == [{"still": "here"}]
    await client.aclose()


# ------------------------------------------------------------ configuration


def test_certfile_and_keyfile_go_together(cert_files: tuple[Path, Path]) -> None:
    certfile, keyfile = cert_files
    with pytest.raises(ValueError, match="certfile and keyfile go together"):
        ServerConfig(certfile=certfile)
    with pytest.raises(ValueError, match="certfile and keyfile go together"):
        ServerConfig(keyfile=keyfile)
    assert ServerConfig().ssl_context() is None
    context = ServerConfig(certfile=certfile, keyfile=keyfile).ssl_context()
    assert context is not None


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    return {"missing": tmp_path / "missing.pem", "garbage": garbage, "folder": tmp_path}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--certfile", "{cert}"], "--certfile and --keyfile go together"),
        (["--keyfile", "{key}"], "--certfile and --keyfile go together"),
        (["--certfile", "{cert}", "--keyfile", "{missing}"], "--keyfile {missing}: cannot read"),
        (["--certfile", "{folder}", "--keyfile", "{key}"], "--certfile {folder}: cannot read"),
        (["--certfile", "{garbage}", "--keyfile", "{key}"], "not a certificate chain"),
        (["--certfile", "{cert}", "--keyfile", "{cert}"], "not a certificate chain"),
    ],
)
def test_serve_refuses_bad_tls_options(
    capsys: pytest.CaptureFixture[str],
    cert_files: tuple[Path, Path],
    bad_files: dict[str, Path],
    args: list[str],
    message: str,
) -> None:
    names = {"cert": cert_files[0], "key": cert_files[1], **bad_files}
    argv = ["serve", "--port", "0", "--allocator", "python", *(a.format(**names) for a in args)]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith("bayeux: ")
    assert message.format(**names) in err
