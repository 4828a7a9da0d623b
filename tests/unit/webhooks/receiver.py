"""A webhook receiver on 127.0.0.1 (port 0, in a thread: tests/loopback_server.py) that records what
reaches it.

The same class is the *canary*: a receiver that no test may ever connect to (counted at accept).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tests.loopback_server import Exchange, LoopbackServer


@dataclass(frozen=True)
class Received:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names
    body: bytes


Route = Callable[[Exchange, "Receiver"], None]


class Receiver(LoopbackServer):
    """Records every request (the body read first), then answers it with the route of its path."""

    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        self.routes = dict(routes or {})
        self.received: list[Received] = []
        self.notes: dict[str, Any] = {}
        super().__init__(protocol="HTTP/1.1", methods=("GET", "POST"))

    def handle(self, h: Exchange) -> None:
        body = h.read_body()
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


def status(code: int, **headers: str) -> Route:
    def route(h: Exchange, _r: Receiver) -> None:
        h.respond(code, b"body of the answer", headers)

    return route


def stall_before_answer(_h: Exchange, r: Receiver) -> None:
    r.stop.wait(10)


def hang_until_closed(_h: Exchange, r: Receiver) -> None:
    """Takes the request and never answers (a client's endpoint that hangs), until the receiver closes."""
    r.stop.wait()


def endless_answer(h: Exchange, r: Receiver) -> None:
    """200, then a body without end (close-delimited) until the client hangs up."""
    sent = 0
    if h.raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"):
        while not r.stop.is_set() and h.raw(b"x" * 65_536):
            sent += 65_536
    r.notes["endless_sent"] = sent
    r.notes["endless_hung_up"] = not r.stop.is_set()


def huge_declared_answer(h: Exchange, r: Receiver) -> None:
    """200 with ``Content-Length`` of 1 GB, of which it sends what the client will take."""
    if h.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n"):
        while not r.stop.is_set() and h.raw(b"x" * 65_536):
            pass


def trickle_after_200(h: Exchange, r: Receiver) -> None:
    """200 at once, then a 1000-byte body one byte every 50 ms."""
    if h.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"):
        for _ in range(1000):
            if r.stop.wait(0.05) or not h.raw(b"x"):
                return
