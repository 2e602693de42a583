"""Static files: the browser client under the mount, and ``static_dir`` at /."""

from __future__ import annotations

import hashlib
import os
from email.utils import formatdate
from pathlib import Path

import pytest
import trio

import bayeux_trio

from .helpers import HttpClient, fail_after, make_config, request, start_server

CLIENT_JS = Path(bayeux_trio.__file__).parent / "static" / "client.js"
SECRET = b"top secret, outside the root"


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "app.js").write_text("console.log(1)")
    (root / "style.css").write_text("body{}")
    (root / "data.json").write_text("{}")
    (root / "notes.txt").write_text("notes")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n")
    (root / "blob.zz-unknown").write_bytes(b"\x00\x01")
    (root / "sub" / "page.html").write_text("<p>sub</p>")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/index.html", "index.html", "text/html; charset=utf-8"),
        ("/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "style.css", "text/css; charset=utf-8"),
        ("/data.json", "data.json", "application/json; charset=utf-8"),
        ("/notes.txt", "notes.txt", "text/plain; charset=utf-8"),
        ("/logo.png", "logo.png", "image/png"),
        ("/blob.zz-unknown", "blob.zz-unknown", "application/octet-stream"),
        ("/sub/page.html", "sub/page.html", "text/html; charset=utf-8"),
        ("/sub/../app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/%61pp.js?v=3", "app.js", "text/javascript; charset=utf-8"),
    ],
)
@fail_after(10)
async def test_files_and_types(
    nursery: trio.Nursery, www: Path, path: str, name: str, content_type: str
) -> None:
    server = await start_server(nursery, make_config(static_dir=www))
    assert server.port is not None
    response = await request(server.port, "GET", path)
    assert response.status == 200
    body = (www / name).read_bytes()
    assert response.body == body
    assert response.header("content-type") == content_type
    assert response.header("content-length") == str(len(body))
    assert response.header("etag") == hashlib.sha1(body).hexdigest()
    assert response.header("last-modified") == formatdate((www / name).stat().st_mtime, usegmt=True)


@fail_after(10)
async def test_conditional_requests(nursery: trio.Nursery, www: Path) -> None:
    server = await start_server(nursery, make_config(static_dir=www))
    assert server.port is not None
    async with await HttpClient.connect(server.port) as client:
        first = await client.request("GET", "/app.js")
        etag = first.header("etag")
        modified = first.header("last-modified")
        assert etag is not None
        assert modified is not None
        cases: list[tuple[list[tuple[str, str]], int]] = [
            ([("if-none-match", etag)], 304),
            ([("if-none-match", f'"{etag}"')], 304),
            ([("if-none-match", f'"other", "{etag}"')], 304),
            ([("if-none-match", "*")], 304),
            ([("if-none-match", '"other"')], 200),
            ([("if-modified-since", modified)], 304),
            ([("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")], 200),
            ([("if-modified-since", "not a date")], 200),
            # If-None-Match wins over If-Modified-Since (RFC 9110)
            ([("if-none-match", '"other"'), ("if-modified-since", modified)], 200),
        ]
        for headers, status in cases:
            response = await client.request("GET", "/app.js", headers=headers)
            assert response.status == status, headers
            if status == 304:
                assert response.body == b""
                assert response.header("etag") == etag
            else:
                assert response.body == b"console.log(1)"


@fail_after(10)
async def test_changed_file_is_served_fresh(nursery: trio.Nursery, www: Path) -> None:
    server = await start_server(nursery, make_config(static_dir=www))
    assert server.port is not None
    before = await request(server.port, "GET", "/notes.txt")
    (www / "notes.txt").write_text("changed")
    stat = (www / "notes.txt").stat()
    os.utime(www / "notes.txt", (stat.st_atime, stat.st_mtime + 10))
    after = await request(server.port, "GET", "/notes.txt")
    assert after.body == b"changed"
    assert after.header("etag") != before.header("etag")


@fail_after(10)
async def test_head(nursery: trio.Nursery, www: Path) -> None:
    server = await start_server(nursery, make_config(static_dir=www))
    assert server.port is not None
    async with await HttpClient.connect(server.port) as client:
        response = await client.request("HEAD", "/index.html")
        assert response.status == 200
        assert response.body == b""
        assert response.header("content-length") == str(len("<h1>home</h1>"))
        # the connection is still in step for the next request
        assert (await client.request("GET", "/index.html")).body == b"<h1>home</h1>"


@pytest.mark.parametrize(
    "path",
    [
        "/missing.html",
        "/sub/",
        "/sub",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub/../../secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/..%5csecret.txt",
        "/escape.txt",
        "/%00index.html",
        "/index.html%00.txt",
    ],
)
@fail_after(10)
async def test_not_found_and_traversal(nursery: trio.Nursery, www: Path, path: str) -> None:
    server = await start_server(nursery, make_config(static_dir=www))
    assert server.port is not None
    response = await request(server.port, "GET", path)
    assert response.status == 404
    assert SECRET not in response.body


@fail_after(10)
async def test_other_methods_on_static_files(nursery: trio.Nursery, www: Path) -> None:
    server = await start_server(nursery, make_config(static_dir=www))
    assert server.port is not None
    response = await request(server.port, "POST", "/index.html", body=b"x")
    assert response.status == 405
    assert b"home" not in response.body


@fail_after(10)
async def test_no_static_dir(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    for path in ("/", "/index.html", "/faye-not-the-mount"):
        response = await request(server.port, "GET", path)
        assert response.status == 404, path


@pytest.mark.parametrize("path", ["/faye/client.js", "/faye.js"])
@fail_after(10)
async def test_browser_client(nursery: trio.Nursery, path: str) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    response = await request(server.port, "GET", path)
    if CLIENT_JS.is_file():
        body = CLIENT_JS.read_bytes()
        assert response.status == 200
        assert response.body == body
        assert response.header("content-type") == "text/javascript; charset=utf-8"
        assert response.header("etag") == hashlib.sha1(body).hexdigest()
    else:
        assert response.status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/faye/missing.js",
        "/faye/../../../etc/passwd.js",
        "/faye/%2e%2e/%2e%2e/secret.js",
        "/faye/sub/dir/x.map",
    ],
)
@fail_after(10)
async def test_client_files_only_by_basename(nursery: trio.Nursery, www: Path, path: str) -> None:
    """Under the mount, only the bundled client's own files are served (by basename)."""
    (www / "secret.js").write_bytes(SECRET)
    server = await start_server(nursery, make_config(static_dir=www))
    assert server.port is not None
    response = await request(server.port, "GET", path)
    assert response.status == 404
    assert SECRET not in response.body


@fail_after(10)
async def test_browser_client_routing(nursery: trio.Nursery, tmp_path: Path) -> None:
    """With client files present: both aliases, the source map, and 304s."""
    from bayeux_trio.server._static import StaticFiles

    (tmp_path / "client.js").write_text("var Faye={}")
    (tmp_path / "client.js.map").write_text('{"version":3}')
    server = await start_server(nursery)
    assert server.port is not None
    server.client_files = StaticFiles(tmp_path, index=None)
    async with await HttpClient.connect(server.port) as client:
        for path in ("/faye/client.js", "/faye.js", "/faye/anything/client.js"):
            response = await client.request("GET", path)
            assert response.status == 200, path
            assert response.body == b"var Faye={}"
            assert response.header("content-type") == "text/javascript; charset=utf-8"
        etag = response.header("etag")
        assert etag == hashlib.sha1(b"var Faye={}").hexdigest()
        cached = await client.request("GET", "/faye.js", headers=[("if-none-match", etag)])
        assert cached.status == 304
        source_map = await client.request("GET", "/faye/client.js.map")
        assert source_map.status == 200
        assert source_map.header("content-type") == "application/json; charset=utf-8"
        assert (await client.request("GET", "/faye/other.js")).status == 404
