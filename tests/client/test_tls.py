"""TLS: https and wss through a TLS-terminating :class:`Proxy` (a trustme CA).

Certificates are verified by default: a server whose certificate the system
does not trust, or whose name does not match, is never talked to.
"""

from __future__ import annotations

import ssl

import pytest
import trio
import trustme

from bayeux_core import TransportDown
from tests.trio.helpers import fail_after, start_server

from .support import Proxy, Recorder, client, eventually


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def tls_proxy(nursery: trio.Nursery, ca: trustme.CA, *names: str) -> tuple[Proxy, int]:
    server = await start_server(nursery)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    proxy = Proxy(server.port or 0, ssl_context=context)
    await nursery.start(proxy.serve)
    return proxy, server.port or 0


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@fail_after(20)
async def test_https_and_wss_with_a_trusted_certificate(
    nursery: trio.Nursery, ca: trustme.CA, transport: str
) -> None:
    proxy, _ = await tls_proxy(nursery, ca, "127.0.0.1")
    for url in (proxy.url, proxy.url.replace("https://", "wss://")):
        async with client(url, transport, ssl_context=trusting(ca)) as alice:
            async with alice.subscribe("/secure") as sub:
                await alice.publish("/secure", {"over": "tls"})
                assert (await sub.receive()).data == {"over": "tls"}
            assert alice.transport == transport
    # The proxy decrypted real requests of the chosen transport.
    assert proxy.heads
    marker = b"upgrade: websocket" if transport == "websocket" else b"post /faye"
    assert all(marker in head.lower() for head in proxy.heads)


@pytest.mark.parametrize(
    ("names", "trust", "reason"),
    [
        (("127.0.0.1",), False, "CERTIFICATE_VERIFY_FAILED"),  # unknown CA
        (("example.com",), True, "CERTIFICATE_VERIFY_FAILED"),  # name mismatch
    ],
    ids=["untrusted", "wrong-name"],
)
@fail_after(20)
async def test_certificates_are_verified_by_default(
    nursery: trio.Nursery,
    ca: trustme.CA,
    transport: str,
    names: tuple[str, ...],
    trust: bool,
    reason: str,
) -> None:
    proxy, _ = await tls_proxy(nursery, ca, *names)
    options = {"ssl_context": trusting(ca)} if trust else {}
    async with client(proxy.url, transport, **options) as alice:
        recorder = Recorder(alice)
        await eventually(lambda: recorder.count(TransportDown) == 1)
        assert reason in (alice.last_error or "")
        assert alice.client_id is None
    assert proxy.heads == []  # not one byte of Bayeux was sent
