"""Serve a built bundle (dist/) on 127.0.0.1 for local use, tests and the demo.

The page cannot be opened as a file:// URL: browsers refuse ES modules, workers and WebAssembly
from file:// (no origin, so every fetch counts as cross-origin) and service workers need http(s)
or localhost. This server sends the right MIME types (text/javascript for .mjs, application/wasm
for .wasm, which WebAssembly streaming requires), the page's Content-Security-Policy as a header
(so it also covers the worker and the service worker, which the page's meta tag does not), and
no-cache so that a rebuilt bundle is picked up. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
from pathlib import Path

from kd_train.data import UserError

CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'")

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


class BundleHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = MIME_TYPES
    quiet = False

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


class BundleServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):   # a browser that hung up early is fine
            super().handle_error(request, client_address)


def make_server(folder: str | os.PathLike, port: int = 8000, quiet: bool = False) -> BundleServer:
    """A server for `folder` on 127.0.0.1:`port` (0: any free port); not started yet."""
    folder = Path(folder)
    if not (folder / "index.html").is_file() or not (folder / "manifest.json").is_file():
        raise UserError(f"{folder} is not a built bundle (no index.html and manifest.json); make one with kd-train build")
    handler = functools.partial(type("Handler", (BundleHandler,), {"quiet": quiet}), directory=str(folder))
    try:
        return BundleServer(("127.0.0.1", port), handler)
    except OSError as err:
        raise UserError(f"cannot listen on 127.0.0.1:{port} ({err.strerror}); choose another port with --port") from None


def url_of(server: BundleServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def serve_in_thread(folder: str | os.PathLike, port: int = 0) -> tuple[BundleServer, str]:
    """Start a quiet server in a daemon thread; returns (server, url). Stop it with server.shutdown()."""
    server = make_server(folder, port, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, url_of(server)


def serve(folder: str | os.PathLike, port: int = 8000) -> None:
    """Serve until Ctrl+C, printing the URL."""
    server = make_server(folder, port)
    print(f"serving {folder} at {url_of(server)}  (127.0.0.1 only; Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
