"""Record real Faye client traffic as seeds for the server fuzz targets.

Usage: ``.venv/bin/python fuzz/record_seeds.py`` (node, npm and Chromium
needed; the npm packages come from tests/interop's cache, as for the interop
tests). It rewrites ``fuzz/seeds-server_http/faye-*`` and
``fuzz/seeds-server_websocket/faye-*``.

Each session runs our server in-process, with the fuzz harness's predictable
client ids (``000…001`` for the first handshake), behind a loopback TCP proxy
that records what the client sends on each connection, chunk by chunk, in
order. The sessions (one client each: handshake, subscribe, publish, receive,
unsubscribe, publish, disconnect):

* the npm ``faye`` 1.4.3 Node.js client over long-polling and WebSocket;
* Faye's browser bundle in Chromium, from a page on the endpoint's origin
  (long-polling, and EventSource if the client picks it) and from another
  origin with WebSocket disabled (CORS ``cross-origin-long-polling``), and
  with CORS disabled as well (``callback-polling``, JSON-P GETs).

A recording becomes an input of the format ``_server_harness.py`` describes:
each chunk is a part for its connection, and a connection the client closed
gets an EOF. For the WebSocket target the upgrade request is dropped (the
harness makes its own) and the frames are kept twice: as sent (masked), and
as frame descriptions for ``build_frame`` with a zero mask, so the fuzzer
mutates the JSON itself.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import trio

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
sys.path[:0] = [str(FUZZ_DIR), str(ROOT)]

import _server_harness as harness  # noqa: E402
import fuzz_server_websocket  # noqa: E402
from wsproto.frame_protocol import FrameDecoder, ParseFailed  # noqa: E402

from bayeux_trio import BayeuxServer, ServerConfig  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Route

__all__ = ["main"]

#: a recording: (connection number, bytes), or (connection number, None) at
#: the client's EOF
Log = list[tuple[int, bytes | None]]
Session = Callable[[str], Awaitable[None]]
#: what copying raises when a peer goes away mid-copy
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

_PAGE = """<!doctype html><meta charset="utf-8"><script src="/faye-browser.js"></script>
<script>
var client = new Faye.Client(%(endpoint)s, {timeout: 25, retry: 1});
%(disable)s.forEach(function (t) { client.disable(t); });
window.transports = [];
client.on('transport:up', function () {
  window.transports.push(client._dispatcher.connectionType);
});
var sub = client.subscribe('/chat/room', function (m) {
  if (m.text !== 'hello') return;
  sub.cancel();
  client.publish('/chat/other', {text: 'bye', n: [1, 2.5, null, true]});
  setTimeout(function () {
    client.disconnect();
    setTimeout(function () { window.done = true; }, 300);
  }, 300);
});
sub.then(function () {
  client.publish('/chat/room', {text: 'hello', from: 'faye \\u00e9\\u2028'});
});
</script>"""


async def record(session: Session) -> Log:
    """Run ``session(endpoint)`` against our server behind a recording proxy."""
    server = BayeuxServer(ServerConfig(host="127.0.0.1", port=0))
    numbers = itertools.count(1)
    server.engine._new_id = lambda: harness.fuzz_client_id(next(numbers))
    log: Log = []
    conns = itertools.count()

    async def proxy(client: trio.SocketStream) -> None:
        index = next(conns)
        assert server.port is not None
        upstream = await trio.open_tcp_stream("127.0.0.1", server.port)

        async def up() -> None:
            with contextlib.suppress(*_GONE):
                while data := await client.receive_some(65536):
                    log.append((index, data))
                    await upstream.send_all(data)
                log.append((index, None))
                await upstream.send_eof()

        async def down() -> None:
            with contextlib.suppress(*_GONE):
                while data := await upstream.receive_some(65536):
                    await client.send_all(data)
                await client.send_eof()

        async with upstream, client, trio.open_nursery() as nursery:
            nursery.start_soon(up)
            nursery.start_soon(down)

    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        listeners = await nursery.start(trio.serve_tcp, proxy, 0)
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(60):
            await session(f"http://127.0.0.1:{port}/faye")
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    return log


def node_session(transport: str) -> Session:
    from tests.interop._support import ensure_node_modules

    async def run(endpoint: str) -> None:
        node_modules = ensure_node_modules()
        command = ["node", str(FUZZ_DIR / "record_client.js"), endpoint, transport]
        env = {"NODE_PATH": str(node_modules), "PATH": "/usr/bin:/bin:/usr/local/bin"}
        await trio.run_process(command, env=env)

    return run


def browser_session(disable: list[str], *, same_origin: bool) -> Session:
    from tests.browser._support import launch_chromium
    from tests.interop._support import ensure_node_modules

    def run_sync(endpoint: str) -> list[str]:
        bundle = (ensure_node_modules() / "faye" / "client" / "faye-browser-min.js").read_bytes()
        page_html = _PAGE % {"endpoint": json.dumps(endpoint), "disable": json.dumps(disable)}
        files = {
            "/page.html": (page_html.encode(), "text/html"),
            "/faye-browser.js": (bundle, "text/javascript"),
        }
        with _page_server(files) as port:
            # Another origin is a real loopback server: Chromium refuses a
            # page it cannot place on the loopback address space.
            origin = endpoint.rsplit("/", 1)[0] if same_origin else f"http://localhost:{port}"
            with launch_chromium() as browser:
                page = browser.new_page()
                if same_origin:
                    for path, (body, content_type) in files.items():
                        page.route(f"{origin}{path}", _fulfil(body, content_type))
                console: list[str] = []
                page.on("console", lambda message: console.append(message.text))
                page.goto(f"{origin}/page.html")
                try:
                    page.wait_for_function("window.done === true", timeout=20000)
                except Exception:
                    print("  console:", *console[:5], sep="\n    ")
                    raise
                transports: list[str] = page.evaluate("window.transports")
                page.close()
        return transports

    async def run(endpoint: str) -> None:
        transports = await trio.to_thread.run_sync(run_sync, endpoint)
        print(f"  browser transports: {transports}")

    return run


def _fulfil(body: bytes, content_type: str) -> Callable[[Route], None]:
    def handler(route: Route) -> None:
        route.fulfill(body=body, content_type=content_type)

    return handler


@contextlib.contextmanager
def _page_server(files: dict[str, tuple[bytes, str]]) -> Iterator[int]:
    """Serve ``files`` on a loopback port (for a page on another origin)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, content_type = files.get(self.path, (b"", "text/plain"))
            self.send_response(200 if body else 404)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def to_segments(log: Log) -> list[harness.Segment]:
    """Chunks to parts: connections take free slots, an EOF frees one."""
    slots: dict[int, int] = {}  # recorded connection -> slot
    busy: list[int | None] = [None] * harness.CONNECTIONS
    parts: list[harness.Segment] = []
    for conn, data in log:
        if conn not in slots:
            if None not in busy:
                # Out of slots: end the oldest connection's input early.
                oldest = busy.index(min(c for c in busy if c is not None))
                parts.append(harness.Segment(oldest, b"", close=1))
                busy[oldest] = None
            slot = busy.index(None)
            slots[conn] = slot
            busy[slot] = conn
        slot = slots[conn]
        if data is None:
            parts.append(harness.Segment(slot, b"", close=1))
            busy[slot] = None
        elif busy[slot] == conn:
            parts.append(harness.Segment(slot, data))
    return parts


def _handshake_body(log: Log) -> bytes:
    """The body of the client's handshake (Faye handshakes over HTTP first)."""
    for conn, data in log:
        if data is not None and b"/meta/handshake" in data:
            stream = b"".join(d for c, d in log if c == conn and d is not None)
            head, _, rest = stream.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            return rest[:length]
    raise SystemExit("no handshake recorded")


def websocket_parts(log: Log) -> tuple[list[harness.Segment], list[harness.Segment]]:
    """The WebSocket connection's frames: as sent, and as frame descriptions.

    The harness's connections start at the WebSocket, so the handshake the
    client made over HTTP is sent as their first frame.
    """
    handshake = _handshake_body(log)
    upgraded = next(
        conn for conn, data in log if data is not None and b"upgrade: websocket" in data.lower()
    )
    chunks = [data for conn, data in log if conn == upgraded and data is not None]
    stream = b"".join(chunks)
    head_end = stream.index(b"\r\n\r\n") + 4
    # masked with a non-zero key, as a browser would
    first = fuzz_server_websocket.build_frame(b"\x81\x03" + handshake)
    raw = [harness.Segment(0, first)]
    skip = head_end
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        raw.append(harness.Segment(0, chunk[skip:]))
        skip = 0
    decoder = FrameDecoder(client=False)
    decoder.receive_bytes(stream[head_end:])
    built = [harness.Segment(0, fuzz_server_websocket.describe(1, handshake), build=True)]
    while True:
        try:
            frame = decoder.process_buffer()
        except ParseFailed as exc:  # pragma: no cover - Faye sends valid frames
            raise SystemExit(f"recorded an invalid frame: {exc}") from exc
        if frame is None:
            break
        assert isinstance(frame.payload, (bytes, bytearray))  # FrameDecoder does not decode
        description = fuzz_server_websocket.describe(
            int(frame.opcode), bytes(frame.payload), fin=frame.message_finished
        )
        built.append(harness.Segment(0, description, build=True))
    return raw, built


def write(path: Path, parts: list[harness.Segment]) -> None:
    path.write_bytes(harness.encode(parts))
    print(f"  wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes, {len(parts)} parts)")


def _post(body: bytes, *, content_type: bytes = b"application/json", extra: bytes = b"") -> bytes:
    return (
        b"POST /faye HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: %d\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


def handmade() -> dict[str, list[harness.Segment]]:
    """Requests no Faye client sends, for the server's other paths."""
    S = harness.Segment
    one = harness.fuzz_client_id(1).encode()
    handshake = (
        b'[{"channel":"/meta/handshake","version":"1.0",'
        b'"supportedConnectionTypes":["long-polling","eventsource"]}]'
    )
    connect = b'[{"channel":"/meta/connect","clientId":"%s","connectionType":"long-polling"}]' % one
    subscribe = b'[{"channel":"/meta/subscribe","clientId":"%s","subscription":"/a/*"}]' % one
    publish = b'[{"channel":"/a/b","clientId":"%s","data":{"x":1}}]' % one
    quoted = handshake.replace(b'"', b"%22")
    chunked = (
        b"POST /faye HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(handshake), handshake)
    )
    return {
        "extra-pipelined-head-options-static": [
            S(
                0,
                b"HEAD /faye HTTP/1.1\r\nHost: h\r\n\r\n"
                b"OPTIONS /faye HTTP/1.1\r\nHost: h\r\nOrigin: http://o\r\n"
                b"Access-Control-Request-Method: POST\r\n\r\n"
                b'GET /faye/client.js HTTP/1.1\r\nHost: h\r\nIf-None-Match: "x"\r\n\r\n'
                b"GET /elsewhere HTTP/1.0\r\n\r\n",
            ),
        ],
        "extra-chunked-continue": [S(0, chunked)],
        "extra-form-and-jsonp": [
            S(
                0,
                _post(
                    b"message=" + quoted + b"&jsonp=cb",
                    content_type=b"application/x-www-form-urlencoded",
                ),
            ),
            S(
                1,
                b"GET /faye?message=%s&jsonp=x.y HTTP/1.1\r\nHost: h\r\n\r\n"
                % connect.replace(b'"', b"%22"),
            ),
        ],
        "extra-eventsource-held-connect": [
            S(0, _post(handshake)),
            S(1, b"GET /faye/%s HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n" % one),
            S(0, _post(subscribe)),
            S(2, _post(connect), jump=5),
            S(0, _post(publish, extra=b"Origin: http://o\r\nConnection: close\r\n")),
            S(2, b"", close=2),
        ],
        # Regression: an EventSource request over HTTP/1.0 got HTTP/1.1 chunk
        # sizes inside a body that h11 framed by closing.
        "regression-eventsource-http10": [
            S(0, _post(handshake)),
            S(0, _post(subscribe)),
            S(1, b"GET /faye/%s HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n" % one),
            S(2, _post(publish)),
        ],
        # Regression: Unicode case folding let a non-ASCII callback name
        # (U+017F, which folds to "s") through the JSON-P grammar.
        "regression-jsonp-unicode-callback": [
            S(0, b"GET /faye?message=%s&jsonp=%%C5%%BF HTTP/1.1\r\nHost: h\r\n\r\n" % quoted),
        ],
        "extra-slow-head-and-oversize": [
            S(0, b"POST /faye HTTP/1.1\r\nHost: h\r\n", jump=7),
            S(1, b"POST /faye HTTP/1.1\r\nHost: h\r\nContent-Length: 99999\r\n\r\n"),
            S(
                2,
                b"GET /faye HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n",
            ),
        ],
    }


def handmade_frames() -> dict[str, list[harness.Segment]]:
    """WebSocket frames no Faye client sends."""
    S = harness.Segment
    describe = fuzz_server_websocket.describe
    one = harness.fuzz_client_id(1).encode()
    handshake = (
        b'[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"]}]'
    )
    connect = b'{"channel":"/meta/connect","clientId":"%s","connectionType":"websocket"}' % one
    return {
        "extra-fragments-and-control": [
            S(0, describe(1, handshake[:20], fin=False), build=True),
            S(0, describe(9, b"ping"), build=True),
            S(0, describe(0, handshake[20:]), build=True),
            S(0, describe(1, connect), build=True),
            S(0, describe(10, b"pong"), build=True),
            S(0, describe(8, b"\x03\xe8"), build=True),
        ],
        # Regression: a ping after the server closed the stream (the session
        # was disconnected from another connection) made wsproto raise.
        "regression-ping-after-close": [
            S(0, describe(1, handshake), build=True),
            S(0, describe(1, b"[" + connect + b"]"), build=True),
            S(
                1,
                describe(1, b'[{"channel":"/meta/disconnect","clientId":"%s"}]' % one),
                build=True,
            ),
            S(0, describe(9, b"ping"), build=True),
        ],
        "extra-bad-frames": [
            S(0, describe(2, b"\x00\x01"), build=True),
            S(1, describe(1, b"\xc3\x28"), build=True),
            S(2, describe(1, b"[1]", masked=False), build=True),
            S(3, bytes([0x81, 0b11000001]) + b"[{}]", build=True),
        ],
    }


async def main() -> None:
    http_dir = FUZZ_DIR / "seeds-server_http"
    ws_dir = FUZZ_DIR / "seeds-server_websocket"
    http_dir.mkdir(exist_ok=True)
    ws_dir.mkdir(exist_ok=True)
    for name, parts in handmade().items():
        write(http_dir / f"{name}.bin", parts)
    for name, parts in handmade_frames().items():
        write(ws_dir / f"{name}.bin", parts)
    if "--handmade" in sys.argv:
        return
    sessions: dict[str, Session] = {
        "faye-node-long-polling": node_session("long-polling"),
        "faye-node-websocket": node_session("websocket"),
        "faye-browser-long-polling": browser_session(["websocket"], same_origin=True),
        "faye-browser-cross-origin": browser_session(
            ["websocket", "eventsource"], same_origin=False
        ),
        "faye-browser-callback-polling": browser_session(
            ["websocket", "eventsource", "cross-origin-long-polling"], same_origin=False
        ),
    }
    for name, session in sessions.items():
        print(name)
        log = await record(session)
        write(http_dir / f"{name}.bin", to_segments(log))
        if name.endswith("websocket"):
            raw, built = websocket_parts(log)
            write(ws_dir / f"{name}-raw.bin", raw)
            write(ws_dir / f"{name}-frames.bin", built)


if __name__ == "__main__":
    trio.run(main)
