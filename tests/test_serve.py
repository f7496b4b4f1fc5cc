"""kd-train serve: only the bundle's own files, no listings, clean errors, idle clients dropped."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest

from kd_train import cli, serve


def make_bundle(root: Path) -> Path:
    """A fake bundle in root/dist, with symlinks to root/outside: a secret file and a secret folder."""
    outside, folder = root / "outside", root / "dist"
    (outside / "secrets").mkdir(parents=True)
    (outside / "secret.txt").write_text("SECRET FILE")
    (outside / "secrets" / "key.txt").write_text("SECRET IN FOLDER")
    (folder / "vendor").mkdir(parents=True)
    (folder / "index.html").write_text("<!doctype html><title>page</title>")
    (folder / "manifest.json").write_text("{}")
    (folder / "vendor" / "lib.mjs").write_text("export const x = 1;")
    (folder / "linked.txt").symlink_to(outside / "secret.txt")
    (folder / "linked-dir").symlink_to(outside / "secrets", target_is_directory=True)
    (folder / "inner-link.json").symlink_to(folder / "manifest.json")   # inside the bundle: fine
    return folder


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: each shutdown() waits for serve_forever's 0.5 s poll."""
    server, _ = serve.serve_in_thread(make_bundle(tmp_path_factory.mktemp("served")))
    yield server
    server.shutdown()
    server.server_close()


def get(server, path: str) -> tuple[int, bytes, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def raw_request(server, request: bytes) -> bytes:
    """Send raw bytes (http.client refuses a NUL or a bad path) and read the whole reply."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_serves_the_bundle_with_its_headers(server):
    status, body, response = get(server, "/")
    assert status == 200 and b"<title>page</title>" in body
    assert response.getheader("Content-Security-Policy") == serve.CSP_HEADER
    for directive in ("form-action 'none'", "base-uri 'none'", "frame-ancestors 'none'", "object-src 'none'"):
        assert directive in serve.CSP_HEADER
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Referrer-Policy") == "no-referrer"
    assert response.getheader("Cache-Control") == "no-cache"
    status, body, response = get(server, "/vendor/lib.mjs")
    assert status == 200 and response.getheader("Content-Type").startswith("text/javascript")
    assert get(server, "/inner-link.json")[:2] == (200, b"{}")
    assert get(server, "/vendor/../index.html?v=1")[0] == 200


@pytest.mark.parametrize("path", ["/linked.txt", "/linked-dir/key.txt", "/linked-dir/", "/linked-dir"])
def test_does_not_follow_symlinks_out_of_the_bundle(server, path):
    status, body, _ = get(server, path)
    assert status in (403, 404)
    assert b"SECRET" not in body


@pytest.mark.parametrize("path", ["/vendor/", "/vendor", "/index.html/"])
def test_no_directory_listing(server, path):
    status, body, _ = get(server, path)
    assert status == 404
    assert b"lib.mjs" not in body


@pytest.mark.parametrize("path", [
    b"/index.html%00.txt",        # NUL after decoding
    b"/index.html%0d%0aX:%20y",   # CR LF after decoding
    b"/index%zz.html",            # invalid percent-encoding
    b"/index%ff.html",            # not UTF-8
    b"/../outside/secret.txt",    # climbs out
    b"/vendor/../../outside/secret.txt",
    b"/" + b"a" * 5000,           # overlong
])
def test_malformed_paths_get_a_clean_400(server, path):
    reply = raw_request(server, b"GET " + path + b" HTTP/1.0\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 400 "), reply[:200]
    assert b"SECRET" not in reply


def test_a_missing_file_is_404(server):
    assert get(server, "/nope.js")[0] == 404
    assert get(server, "/" + "a" * 300)[0] == 404   # a name too long for the file system


def test_an_idle_connection_is_dropped(bundle, monkeypatch):
    monkeypatch.setattr(serve, "IDLE_TIMEOUT_S", 0.5, raising=False)
    server, _ = serve.serve_in_thread(bundle)
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=3) as sock:
            started = time.monotonic()
            assert sock.recv(1024) == b""   # closed by the server, not timed out here
            assert time.monotonic() - started < 2.5
    finally:
        server.shutdown()
        server.server_close()


def test_etags_and_content_addressed_urls(tmp_path):
    """Every file has an ETag (its sha256, and the encoding sent) and If-None-Match gets 304 without a body,
    compressed or not; a URL whose ?h= is the file's sha256 may be kept for ever, any other is revalidated."""
    import hashlib

    folder = make_bundle(tmp_path)
    big = "export const text = '" + "heat flows from warm to cold. " * 200 + "';\n"
    (folder / "vendor" / "big.mjs").write_text(big)
    digest = hashlib.sha256(big.encode()).hexdigest()
    server, _ = serve.serve_in_thread(folder)
    try:
        def fetch(path: str, **headers) -> http.client.HTTPResponse:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.body = response.read()
            conn.close()
            return response

        for encoding in ("br", "gzip", "identity"):
            first = fetch("/vendor/big.mjs", **{"Accept-Encoding": encoding})
            etag = first.getheader("ETag")
            assert first.status == 200 and etag.startswith(f'"{digest}') and first.getheader("Cache-Control") == "no-cache"
            again = fetch("/vendor/big.mjs", **{"Accept-Encoding": encoding, "If-None-Match": etag})
            assert again.status == 304 and again.body == b"" and again.getheader("ETag") == etag
        etags = {fetch("/vendor/big.mjs", **{"Accept-Encoding": e}).getheader("ETag") for e in ("br", "gzip", "identity")}
        assert len(etags) == 3                                        # one per encoding sent
        assert fetch(f"/vendor/big.mjs?h={digest}").getheader("Cache-Control") == "public, max-age=31536000, immutable"
        assert fetch(f"/vendor/big.mjs?h={'0' * 64}").getheader("Cache-Control") == "no-cache"
        assert fetch("/vendor/big.mjs", **{"If-None-Match": '"other"'}).status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_serve_refuses_a_port_out_of_range(capsys):
    assert cli.main(["serve", "x", "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--port" in err and "65535" in err


def test_serve_help_says_local_use_only(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "local use and testing only" in out
    assert serve.CSP_HEADER in out.replace("\n", " ").replace("  ", " ") and "nosniff" in out and "application/wasm" in out


def serve_once(monkeypatch, capsys, bundle: Path, *host: str) -> str:
    """Run 'kd-train serve' with serve_forever stopped at once by a Ctrl+C; its stderr."""
    def interrupted(self, poll_interval=0.5):
        raise KeyboardInterrupt

    monkeypatch.setattr(serve.BundleServer, "serve_forever", interrupted)
    assert cli.main(["serve", str(bundle), "--port", "0", *host]) == 0
    return capsys.readouterr().err


def test_serve_listens_on_loopback_without_warning(monkeypatch, capsys, bundle):
    assert "warning" not in serve_once(monkeypatch, capsys, bundle)


def test_serve_warns_when_listening_beyond_this_machine(monkeypatch, capsys, bundle):
    err = serve_once(monkeypatch, capsys, bundle, "--host", "0.0.0.0")
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "not production" in warnings[0]


def test_responses_are_compressed_as_the_browser_accepts(tmp_path):
    import gzip

    folder = make_bundle(tmp_path)
    big = b"export const data = " + b"[1, 2, 3, 4, 5, 6, 7, 8], " * 400 + b"0;"
    (folder / "vendor" / "big.mjs").write_bytes(big)
    server, _ = serve.serve_in_thread(folder)
    try:
        def fetch(path: str, accept: str | None) -> tuple[bytes, dict]:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
            conn.request("GET", path, headers={"Accept-Encoding": accept} if accept else {})
            response = conn.getresponse()
            body, headers = response.read(), {k.lower(): v for k, v in response.getheaders()}
            conn.close()
            return body, headers

        body, headers = fetch("/vendor/big.mjs", "gzip, deflate")
        assert headers["content-encoding"] == "gzip" and gzip.decompress(body) == big and len(body) < len(big) / 4
        assert headers["content-type"].startswith("text/javascript") and headers["vary"] == "Accept-Encoding"
        assert "content-security-policy" in headers
        body, headers = fetch("/vendor/big.mjs", "gzip, deflate, br")
        import brotli

        assert headers["content-encoding"] == "br" and brotli.decompress(body) == big
        body, headers = fetch("/vendor/big.mjs", "br;q=0, gzip")
        assert headers["content-encoding"] == "gzip"
        for accept in (None, "identity"):
            body, headers = fetch("/vendor/big.mjs", accept)
            assert body == big and "content-encoding" not in headers
        body, headers = fetch("/vendor/lib.mjs", "gzip")                      # too small to be worth it
        assert body == b"export const x = 1;" and "content-encoding" not in headers
        assert fetch("/linked.txt", "gzip")[1].get("content-encoding") is None   # still refused: 404
    finally:
        server.shutdown()
        server.server_close()



def test_a_client_trickling_its_headers_is_dropped(bundle, monkeypatch):
    """Each header line comes within the idle timeout, but the head as a whole never ends."""
    monkeypatch.setattr(serve, "IDLE_TIMEOUT_S", 1.0, raising=False)
    monkeypatch.setattr(serve, "HEAD_DEADLINE_S", 1.5, raising=False)
    server, _ = serve.serve_in_thread(bundle)
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            sock.settimeout(0.3)
            closed = False
            while not closed and time.monotonic() - started < 10:
                try:
                    closed = sock.recv(1024) == b""
                except TimeoutError:   # still open: one more header line, well within the idle timeout
                    try:
                        sock.sendall(b"X-Trickle: 1\r\n")
                    except OSError:
                        closed = True
                except OSError:
                    closed = True
            assert closed and time.monotonic() - started < 6
        assert get(server, "/index.html")[0] == 200   # and the server goes on serving
    finally:
        server.shutdown()
        server.server_close()


def test_the_listen_backlog_takes_a_burst():
    assert serve.BundleServer.request_queue_size >= 64


def test_a_symlink_loop_in_the_bundle_prints_no_traceback(bundle, monkeypatch):
    import threading

    (bundle / "loop").symlink_to(bundle / "loop")
    (bundle / "vendor" / "a").symlink_to(bundle / "vendor" / "b")
    (bundle / "vendor" / "b").symlink_to(bundle / "vendor" / "a")
    (bundle / "big.js").write_text("x" * 5000)
    raised = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    server = serve.make_server(bundle, 0, quiet=True)
    try:
        server.precompressing.join(timeout=60)
        assert not server.precompressing.is_alive() and raised == []
    finally:
        server.server_close()
