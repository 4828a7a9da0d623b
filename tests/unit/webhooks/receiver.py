"""A webhook receiver on 127.0.0.1 (port 0, in a thread) that records what reaches it.

The same class is the *canary*: a receiver that no test may ever connect to (counted at accept).
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Received:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names
    body: bytes


Route = Callable[["_Handler", "Receiver"], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.owner.handle(self, body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def raw(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        return True

    def respond(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        head = [f"HTTP/1.1 {status} X", "Connection: close", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.raw(("\r\n".join(head) + "\r\n\r\n").encode() + body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Receiver

    def get_request(self) -> tuple[Any, Any]:
        with self.owner.lock:  # accept and count under the lock: see settled_connections
            conn, addr = self.socket.accept()
            self.owner.connections += 1
        return conn, addr


class Receiver:
    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        self.routes = dict(routes or {})
        self.lock = threading.Lock()
        self.connections = 0
        self.received: list[Received] = []
        self.notes: dict[str, Any] = {}
        self.stop = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = int(self.httpd.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def handle(self, h: _Handler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self.lock:
            self.received.append(Received(h.command, h.path, headers, body))
        h.close_connection = True
        route = self.routes.get(urlsplit(h.path).path)
        if route is None:
            h.respond(404, b"not found")
        else:
            route(h, self)

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for r in self.received if urlsplit(r.path).path == path)

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


def status(code: int, **headers: str) -> Route:
    def route(h: _Handler, _r: Receiver) -> None:
        h.respond(code, b"body of the answer", headers)

    return route


def stall_before_answer(_h: _Handler, r: Receiver) -> None:
    r.stop.wait(10)


def hang_until_closed(_h: _Handler, r: Receiver) -> None:
    """Takes the request and never answers (a client's endpoint that hangs), until the receiver closes."""
    r.stop.wait()


def endless_answer(h: _Handler, r: Receiver) -> None:
    """200, then a body without end (close-delimited) until the client hangs up."""
    sent = 0
    if h.raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"):
        while not r.stop.is_set() and h.raw(b"x" * 65_536):
            sent += 65_536
    r.notes["endless_sent"] = sent
    r.notes["endless_hung_up"] = not r.stop.is_set()


def huge_declared_answer(h: _Handler, r: Receiver) -> None:
    """200 with ``Content-Length`` of 1 GB, of which it sends what the client will take."""
    if h.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n"):
        while not r.stop.is_set() and h.raw(b"x" * 65_536):
            pass


def trickle_after_200(h: _Handler, r: Receiver) -> None:
    """200 at once, then a 1000-byte body one byte every 50 ms."""
    if h.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"):
        for _ in range(1000):
            if r.stop.wait(0.05) or not h.raw(b"x"):
                return
