"""The watchdog: the total deadline enforced on real sockets, and the peer of each connection checked."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from image_pipeline.safe_fetch.addresses import IPAddress, _same_endpoint


class _Watchdog:
    """Enforces the total deadline on real sockets and checks who each connection went to.

    httpcore reports every new TCP connection through the ``trace`` request extension; we keep a
    duplicate of its socket so that, when the deadline passes, ``shutdown()`` wakes up a read that
    is blocked in another phase (TLS handshake, a header trickle, a stalled body). The peer
    address of each connection is compared with the address we checked and pinned.
    """

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._closed = False
        self.fired = False
        self.expected: tuple[IPAddress, int] | None = None  # (address, port) the next connection must reach
        self.peer_mismatch: str | None = None
        self.peers: list[tuple[str, int]] = []

    def trace(self, name: str, info: dict[str, Any]) -> None:
        if name != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        try:
            peer_addr = sock.getpeername()
            peer = (str(peer_addr[0]), int(peer_addr[1]))
            dup = sock.dup()
        except (OSError, IndexError, TypeError, ValueError):
            self.peer_mismatch = "an unknown peer"
            _shutdown(sock)
            return
        with self._lock:
            self.peers.append(peer)
            same = self.expected is None or _same_endpoint(peer, self.expected)
            if not same:
                self.peer_mismatch = f"{peer[0]} port {peer[1]}"
            if self._closed:
                dup.close()
                return
            self._sockets.append(dup)
            if self._timer is None and not self.fired:
                self._timer = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._fire)
                self._timer.name = "safe-fetch-deadline"
                self._timer.daemon = True
                self._timer.start()
            kill = self.fired or not same
        if kill:
            _shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for s in sockets:
            _shutdown(s)

    def release(self) -> None:
        """Drop the sockets of the finished hop (its connection was closed: ``Connection: close``)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            s.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
            sockets, self._sockets = self._sockets, []
        if timer is not None:
            timer.cancel()
        for s in sockets:
            s.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
