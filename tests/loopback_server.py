"""The one HTTP(S) server the tests run: on 127.0.0.1, port 0, in a thread.

Every test server is one of these with its own `handle(exchange)`: the image host of
tests/http_fixtures.py, safe_fetch's peers, the webhook receivers (unit, e2e) and the emulator's
callback receiver. What they need, and what this gives them all:

* the standard library's request handler (`send_response`, `wfile`, ...) to answer as usual, plus
  `raw()` / `respond()` to write any bytes at all: a lying Content-Length, a body cut short, headers
  one byte at a time (safe_fetch's and the webhook sender's faults);
* a count of the TCP connections accepted (`connections`, `settled_connections()`), counted at accept,
  so that a *canary* proves no connection at all reached it, not merely no request;
* `stop`, an event set by `close()` that ends stalled and trickling answers at once.

Not pytest-httpserver: it answers through werkzeug, which writes well-formed responses only and does not
expose its accepted connections, so the byte-level faults and the canaries above could not be built on
it; a second kind of server beside this one for the plain cases would be two helpers again.
"""

from __future__ import annotations

import select
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


class Exchange(BaseHTTPRequestHandler):
    """One request and its answer: the stdlib's handler, handed to the server's `handle`."""

    server: _Server

    def setup(self) -> None:
        self.protocol_version = self.server.owner.protocol
        super().setup()

    def _dispatch(self) -> None:
        if self.command not in self.server.owner.methods:
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        self.server.owner.handle(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def read_body(self) -> bytes:
        """The request body (Content-Length bytes; none without one)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def raw(self, data: bytes) -> bool:
        """Write bytes as they are; False once the client has gone."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        return True

    def respond(self, status: int, body: bytes = b"", headers: dict[str, str | None] | None = None) -> None:
        """An HTTP/1.1 answer that closes the connection; a header given None is left out (Content-Length
        too, which `headers` may also override)."""
        self.close_connection = True
        head = [f"HTTP/1.1 {status} X", "Connection: close"]
        all_headers = {"Content-Length": str(len(body)), **(headers or {})}
        head += [f"{name}: {value}" for name, value in all_headers.items() if value is not None]
        self.raw(("\r\n".join(head) + "\r\n\r\n").encode() + body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackServer

    def get_request(self) -> tuple[Any, Any]:
        # accept and count under the lock: see LoopbackServer.settled_connections
        with self.owner.lock:
            conn, addr = self.socket.accept()
            self.owner.connections += 1
        return conn, addr


class LoopbackServer:
    """An HTTP server (HTTPS with `tls`) on 127.0.0.1:0 answering every request with `handle`.

    `protocol` is the handler's protocol_version ("HTTP/1.0": one request per connection). Only the
    `methods` listed reach `handle`; others get the stdlib's 501. Use it as a context manager, or
    call close()."""

    def __init__(
        self,
        handle: Callable[[Exchange], None] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        protocol: str = "HTTP/1.0",
        methods: tuple[str, ...] = METHODS,
    ) -> None:
        if handle is not None:
            self.handle = handle  # type: ignore[method-assign]
        self.protocol = protocol
        self.methods = methods
        self.lock = threading.Lock()
        self.connections = 0
        self.stop = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), Exchange)
        self.httpd.owner = self
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def handle(self, exchange: Exchange) -> None:
        """Answer one request (given to the constructor, or overridden)."""
        exchange.send_error(404)

    def settled_connections(self) -> int:
        """Connections accepted so far plus any still waiting in the kernel's accept queue."""
        with self.lock:
            pending, _, _ = select.select([self.httpd.socket], [], [], 0)
            return self.connections + (1 if pending else 0)

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
