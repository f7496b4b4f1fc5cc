"""Serve a built bundle (dist/) on this machine: for local use and testing only, not production.

The page cannot be opened as a file:// URL: browsers refuse ES modules, workers and WebAssembly
from file:// (no origin, so every fetch counts as cross-origin) and service workers need http(s)
or localhost. This server sends the right MIME types (text/javascript for .mjs, application/wasm
for .wasm, which WebAssembly streaming requires), the page's Content-Security-Policy as a header
(so it also covers the worker and the service worker, which the page's meta tag does not), and
no-cache so that a rebuilt bundle is picked up (but a URL that names a file by its sha256, "?h=", as
the page asks for every file, is cacheable for ever: Cache-Control immutable), an ETag (the file's sha256)
with every file, honouring If-None-Match, and compresses what it sends (brotli or gzip, as
the browser accepts: the bundle is about a quarter of its size on the wire). It listens on
127.0.0.1 unless told otherwise.
It serves only regular files whose real path is inside the bundle folder (no symlinks out of it,
no directory listings), answers malformed paths with 400 and drops idle connections.

For production, host dist/ with a real web server (e.g. nginx or Caddy, see README.md) that sends
these headers:
  Content-Security-Policy: CSP_HEADER below (the page's policy, with form-action 'none', base-uri 'none'
    and frame-ancestors 'none')
  X-Content-Type-Options: nosniff
  Referrer-Policy: no-referrer
  Content-Type: application/wasm for .wasm, text/javascript for .mjs and .js
  Cache-Control: no-cache, and "public, max-age=31536000, immutable" for a URL whose ?h= is the file's
    sha256 (or no-cache throughout: the page then revalidates every file, with ETags)
and compresses .wasm, .bin, .zip, .mjs, .js and .json responses (gzip or brotli).
"""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import ipaddress
import os
import re
import socket
import sys
import threading
import urllib.parse
from http import HTTPStatus
from pathlib import Path

from kd_train.data import UserError

# The page's policy (index.html's meta tag). Scripts: the bundle's own files; blob: URLs, which are how the
# page runs worker.js, Pyodide's and onnxruntime-web's modules from bytes it checked against manifest.json;
# WebAssembly; and one inline script, index.html's watchdog (web/page/watchdog.js), by its sha256 (the build
# refuses a watchdog.js with another hash). No form is ever submitted, no <base>, no plugins.
WATCHDOG_SHA256 = "sha256-SFa8jwWRsDT2f4pTACxmQmQ5RUYrFo8KlPVbz+p/ZaA="
CSP = (f"default-src 'self'; script-src 'self' blob: 'wasm-unsafe-eval' '{WATCHDOG_SHA256}'; "
       "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'")
# What a host sends as the Content-Security-Policy header: the same, plus what only a header can say (a meta
# tag's frame-ancestors is ignored): no other site may frame the page.
CSP_HEADER = CSP + "; frame-ancestors 'none'"

IDLE_TIMEOUT_S = 30.0      # a connection that sends nothing for this long is dropped
HEAD_DEADLINE_S = 30.0     # ... and one whose request line and headers take longer than this in all
MAX_PATH_LENGTH = 1024     # longer request paths get 400: no file of a bundle has a name near that
LOOPBACK_HOST = "127.0.0.1"

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".zip": "application/zip",
    ".onnx": "application/octet-stream",
    ".py": "text/x-python; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    "": "application/octet-stream",
}

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class Refused(Exception):
    """A request the server will not answer with a file: `status` says why."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def url_path(target: str) -> str:
    """The decoded, normalized path of a request target ('/a/b/' stays with its trailing slash).

    Raises Refused(400) for a malformed one: not starting with '/', too long, bad percent-encoding
    or UTF-8, control characters (NUL included) or '..' segments climbing above the root.
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        raise Refused(HTTPStatus.BAD_REQUEST, "the path must start with /")
    if len(path) > MAX_PATH_LENGTH:
        raise Refused(HTTPStatus.BAD_REQUEST, "path too long")
    if _BAD_PERCENT.search(path):
        raise Refused(HTTPStatus.BAD_REQUEST, "invalid percent-encoding")
    try:
        path = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise Refused(HTTPStatus.BAD_REQUEST, "the path is not UTF-8") from None
    if _CONTROL_CHARS.search(path):
        raise Refused(HTTPStatus.BAD_REQUEST, "control character in the path")
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if not parts:
                raise Refused(HTTPStatus.BAD_REQUEST, "the path climbs above the root")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    trailing = "/" if path.endswith("/") and parts else ""
    return "/" + "/".join(parts) + trailing


def real_file(root: Path, path: str) -> Path:
    """The real path of the file that URL path `path` (from url_path) names in folder `root`.

    A folder stands for its index.html. Raises Refused(404) for a missing file, a folder without
    index.html, or anything whose real path (symlinks followed) is outside the real path of `root`.
    """
    try:
        root = root.resolve()
        target = _inside(root, root / path.lstrip("/"))
        if target.is_dir():
            target = _inside(root, target / "index.html")
        elif path.endswith("/"):
            raise Refused(HTTPStatus.NOT_FOUND, "file not found")   # a file is not a folder
        if not target.is_file():
            raise Refused(HTTPStatus.NOT_FOUND, "file not found")
        return target
    except (OSError, RuntimeError):   # a name too long, a symlink loop
        raise Refused(HTTPStatus.NOT_FOUND, "file not found") from None


def is_folder(root: Path, path: str) -> bool:
    """Whether URL path `path` names a folder in `root` (where it really is is for real_file to check)."""
    try:
        return (root / path.lstrip("/")).is_dir()
    except OSError:
        return False


def _inside(root: Path, path: Path) -> Path:
    real = path.resolve()
    if not real.is_relative_to(root):
        raise Refused(HTTPStatus.NOT_FOUND, "file not found")
    return real


# ---- compression: each file compressed once, kept in memory while the server runs ----------------
COMPRESS_MIN_BYTES = 1024
NOT_COMPRESSED = {".png"}   # already compressed
_compressed: dict[tuple, bytes] = {}
_compressed_lock = threading.Lock()


def _brotli():
    try:
        import brotli
    except ImportError:   # the page still works: gzip only
        return None
    return brotli


def compressed(path: Path, encoding: str) -> bytes:
    """``path``'s bytes compressed with ``encoding`` ("br" or "gzip"), once per file version."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, encoding)
    with _compressed_lock:
        body = _compressed.get(key)
    if body is None:
        data = path.read_bytes()
        body = _brotli().compress(data, quality=5) if encoding == "br" else gzip.compress(data, 6, mtime=0)
        with _compressed_lock:
            _compressed[key] = body
    return body


_hashes: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """``path``'s sha256 (hex), once per file version: its ETag, and what a content-addressed URL names."""
    import hashlib

    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _compressed_lock:
        digest = _hashes.get(key)
    if digest is None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with _compressed_lock:
            _hashes[key] = digest
    return digest


IMMUTABLE = "public, max-age=31536000, immutable"


def encodings_accepted(header: str | None) -> list[str]:
    """The encodings of an Accept-Encoding header this server can send, best first ("br", "gzip")."""
    accepted = set()
    for part in (header or "").split(","):
        name, _, params = part.strip().partition(";")
        if not re.search(r"q\s*=\s*0(\.0*)?\s*$", params):
            accepted.add(name.strip().lower())
    return [e for e in ("br", "gzip") if e in accepted and (e != "br" or _brotli() is not None)]


def precompress(folder: Path) -> None:
    """Compress every file of the bundle both ways (run in a background thread when a server starts)."""
    try:
        paths = sorted(folder.rglob("*"))
    except (OSError, RuntimeError):   # a folder that vanished or loops: its files are compressed when asked for
        return
    for path in paths:
        try:
            if not path.resolve().is_relative_to(folder):   # a symlink out of the bundle: never served, never read
                continue
            if path.is_file() and path.suffix not in NOT_COMPRESSED and path.stat().st_size >= COMPRESS_MIN_BYTES:
                for encoding in ("br", "gzip") if _brotli() else ("gzip",):
                    compressed(path, encoding)
        except (OSError, RuntimeError):   # a symlink loop, a file removed meanwhile: a request gets 404
            continue


class BundleHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = MIME_TYPES
    quiet = False
    timeout = IDLE_TIMEOUT_S

    def send_head(self):
        self._etag, self._cache_control = None, "no-cache"
        try:
            path = url_path(self.path)
            if not path.endswith("/") and is_folder(self._root(), path):
                real_file(self._root(), path + "/")   # 404 unless it has an index.html of the bundle
                return self._redirect(path + "/")     # so that the page's relative URLs work
            target = real_file(self._root(), path)
            encodings = encodings_accepted(self.headers.get("Accept-Encoding"))
            plain = not encodings or target.suffix in NOT_COMPRESSED or target.stat().st_size < COMPRESS_MIN_BYTES
            # ETag: the file's sha256 (and the encoding sent); a URL that names the file by its sha256
            # ("?h=", as the page asks for every file) may be kept by the browser for ever.
            digest = file_sha256(target)
            self._etag = f'"{digest}"' if plain else f'"{digest}-{encodings[0]}"'
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            if query.get("h") == [digest]:
                self._cache_control = IMMUTABLE
            if self._etag in [t.strip() for t in self.headers.get("If-None-Match", "").split(",")]:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.send_header("Vary", "Accept-Encoding")
                self.end_headers()
                return None
            if plain:
                return super().send_head()   # it opens what translate_path returns: a checked real file
            body = compressed(target, encodings[0])
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", self.guess_type(str(target)))
            self.send_header("Content-Encoding", encodings[0])
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Vary", "Accept-Encoding")
            self.end_headers()
            return io.BytesIO(body)
        except Refused as refused:
            self.send_error(refused.status, str(refused))
            return None

    def translate_path(self, path: str) -> str:
        return str(real_file(self._root(), url_path(path)))

    def list_directory(self, path):
        self.send_error(HTTPStatus.NOT_FOUND, "file not found")   # never reached: translate_path gives files only
        return None

    def _root(self) -> Path:
        return Path(self.directory)

    def _redirect(self, path: str) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", urllib.parse.quote(path))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP_HEADER)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", getattr(self, "_cache_control", "no-cache"))
        if getattr(self, "_etag", None):
            self.send_header("ETag", self._etag)
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    def handle_one_request(self) -> None:
        # the request line and headers must come within HEAD_DEADLINE_S in all: a client that trickles a
        # header line just within the idle timeout, forever, is dropped (the socket waits at most what is left)
        self.rfile = _Deadline(self.rfile, self.connection, HEAD_DEADLINE_S, self.timeout)
        super().handle_one_request()   # its TimeoutError ends the connection

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        finally:   # the head is read: the response is sent under the idle timeout only
            if isinstance(self.rfile, _Deadline):
                self.rfile = self.rfile.stream
                self.connection.settimeout(self.timeout)


class _Deadline:
    """A request's input stream whose line reads share one deadline."""

    def __init__(self, stream, sock, seconds: float, idle: float | None):
        import time

        self.stream, self.sock, self.idle, self.clock = stream, sock, idle, time.monotonic
        self.deadline = self.clock() + seconds

    def readline(self, limit: int = -1) -> bytes:
        left = self.deadline - self.clock()
        if left <= 0:
            raise TimeoutError("the request's headers took too long")
        self.sock.settimeout(left if self.idle is None else min(self.idle, left))
        return self.stream.readline(limit)

    def __getattr__(self, name):
        return getattr(self.stream, name)


class BundleServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64   # listen backlog: a page's burst of requests does not wait for a retry (default 5)

    def handle_error(self, request, client_address) -> None:
        # a browser that hung up early, or a client dropped for idling, is fine
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class BundleServer6(BundleServer):
    address_family = socket.AF_INET6


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise UserError(f"port {port} is out of range: choose one from 1 to 65535 with --port (0: any free port)")


def make_server(folder: str | os.PathLike, port: int = 8000, quiet: bool = False,
                host: str = LOOPBACK_HOST) -> BundleServer:
    """A server for `folder` on `host`:`port` (0: any free port); not started yet."""
    check_port(port)
    folder = Path(folder)
    if not (folder / "index.html").is_file() or not (folder / "manifest.json").is_file():
        raise UserError(f"{folder} is not a built bundle (no index.html and manifest.json); make one with kd-train build")
    # read at each call, so that tests can shorten IDLE_TIMEOUT_S
    handler_class = type("Handler", (BundleHandler,), {"quiet": quiet, "timeout": IDLE_TIMEOUT_S})
    handler = functools.partial(handler_class, directory=str(folder))
    server_class = BundleServer6 if ":" in host else BundleServer
    try:
        server = server_class((host, port), handler)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err}); "
                        f"choose another port with --port or another address with --host") from None
    server.precompressing = threading.Thread(target=precompress, args=(folder.resolve(),), daemon=True)
    server.precompressing.start()   # join it to measure without the first requests compressing
    return server


def is_loopback(server: BundleServer) -> bool:
    """Whether `server` can be reached from this machine only."""
    return ipaddress.ip_address(server.server_address[0]).is_loopback


def url_of(server: BundleServer) -> str:
    host, port = server.server_address[:2]
    address = ipaddress.ip_address(host)
    if address.is_unspecified:   # listening on every address: this machine's is the one to open
        address = ipaddress.ip_address("::1" if address.version == 6 else LOOPBACK_HOST)
    return f"http://{address}:{port}/" if address.version == 4 else f"http://[{address}]:{port}/"


def serve_in_thread(folder: str | os.PathLike, port: int = 0,
                    host: str = LOOPBACK_HOST) -> tuple[BundleServer, str]:
    """Start a quiet server in a daemon thread; returns (server, url). Stop it with server.shutdown()."""
    server = make_server(folder, port, quiet=True, host=host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url_of(server)


def serve(folder: str | os.PathLike, port: int = 8000, host: str = LOOPBACK_HOST) -> None:
    """Serve until Ctrl+C, printing the URL (and a warning when other machines can connect)."""
    server = make_server(folder, port, host=host)
    if not is_loopback(server):
        print(f"warning: listening on {server.server_address[0]}, reachable from other machines; this server is "
              f"for local use and testing, not production (host dist/ with a real web server)", file=sys.stderr)
    print(f"serving {folder} at {url_of(server)}  (local use and testing only; Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
