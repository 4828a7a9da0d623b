"""The tests' one HTTP server (tests/loopback_server.py): what the canaries and the fault routes rely on."""

from __future__ import annotations

import socket
import time

import httpx

from tests.loopback_server import Exchange, LoopbackServer


def test_a_connection_that_sends_nothing_is_counted() -> None:
    # What a canary proves: not even a TCP connection reached it.
    with LoopbackServer() as canary:
        assert canary.settled_connections() == 0
        with socket.create_connection(("127.0.0.1", canary.port), timeout=5):
            deadline = time.monotonic() + 5
            while canary.settled_connections() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert canary.settled_connections() == 1


def ended_by_server(connection: socket.socket) -> bool:
    """The server closed the connection: an orderly FIN, or a reset when it closed with the request
    unread (which of the two depends on timing, so both count)."""
    try:
        return connection.recv(100) == b""
    except ConnectionResetError:
        return True


def test_answers_are_written_byte_for_byte_and_stop_ends_a_stalled_one() -> None:
    def handle(exchange: Exchange) -> None:
        if exchange.path == "/lies":
            exchange.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort")
        elif exchange.path == "/stall":
            exchange.server.owner.stop.wait(10)
        else:
            exchange.respond(201, b"made", {"X-Note": "yes", "Content-Length": None})

    server = LoopbackServer(handle, methods=("GET",))
    try:
        made = httpx.get(f"{server.origin}/made", timeout=5)
        assert (made.status_code, made.content, made.headers["x-note"]) == (201, b"made", "yes")
        assert "content-length" not in made.headers  # close-delimited, as asked
        try:
            httpx.get(f"{server.origin}/lies", timeout=5)
            raise AssertionError("a body shorter than its Content-Length was accepted")
        except httpx.RemoteProtocolError:
            pass
        assert httpx.post(f"{server.origin}/made", timeout=5).status_code == 501  # GET only
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as stalled:
            stalled.sendall(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            server.close()
            assert ended_by_server(stalled) and time.monotonic() - started < 5
    finally:
        server.close()
