"""The watchdog: the total deadline enforced on real sockets, and the peer of each connection checked.

One daemon thread per process ("safe-fetch-deadline") watches the deadlines of every fetch in flight,
instead of a ``threading.Timer`` per fetch (starting and cancelling one took about 0.2 ms, half the time
Pillow takes to verify a 1 MB PNG). It ends once no fetch has been in flight for ``IDLE_SECONDS``, so
no thread outlives the fetches for long, and the next fetch starts it again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

from image_pipeline.safe_fetch.addresses import IPAddress, same_endpoint

IDLE_SECONDS = 0.5


class Watchdog:
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
        self._watched = False
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
            same = self.expected is None or same_endpoint(peer, self.expected)
            if not same:
                self.peer_mismatch = f"{peer[0]} port {peer[1]}"
            if self._closed:
                dup.close()
                return
            self._sockets.append(dup)
            watch = not self._watched and not self.fired
            self._watched = True
            kill = self.fired or not same
        if watch:
            _DEADLINES.watch(self, self._deadline)
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
            watched, self._watched = self._watched, False
            sockets, self._sockets = self._sockets, []
        if watched:
            _DEADLINES.forget(self)
        for s in sockets:
            s.close()


class _Deadlines:
    """The process's deadline thread: fires each watched ``Watchdog`` when its deadline passes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every fetch and the thread (a forked child has no copy of the thread)."""
        self._condition = threading.Condition(threading.Lock())
        self._watched: dict[Watchdog, float] = {}
        self._thread: threading.Thread | None = None
        self._wakes_at = float("inf")  # when the thread's current wait ends
        self._quiet_since = 0.0  # when the last watched fetch ended

    def watch(self, watchdog: Watchdog, deadline: float) -> None:
        with self._condition:
            self._watched[watchdog] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="safe-fetch-deadline", daemon=True)
                self._wakes_at = float("-inf")
                self._thread.start()
            elif deadline < self._wakes_at:
                self._condition.notify()

    def forget(self, watchdog: Watchdog) -> None:
        with self._condition:
            self._watched.pop(watchdog, None)
            self._quiet_since = time.monotonic()

    def _run(self) -> None:
        while True:
            with self._condition:
                now = time.monotonic()
                due = [watchdog for watchdog, deadline in self._watched.items() if deadline <= now]
                for watchdog in due:
                    del self._watched[watchdog]
                if not due:
                    # Wake at the next deadline, and at least every IDLE_SECONDS to see whether every
                    # fetch has ended; end when none has been watched for that long.
                    if self._watched:
                        self._wakes_at = min(min(self._watched.values()), now + IDLE_SECONDS)
                    else:
                        self._wakes_at = self._quiet_since + IDLE_SECONDS
                        if self._wakes_at <= now:
                            self._thread = None
                            return
                    self._condition.wait(self._wakes_at - now)
                    continue
                self._quiet_since = now
            for watchdog in due:  # outside our lock: _fire takes the watchdog's own
                watchdog._fire()


_DEADLINES = _Deadlines()
os.register_at_fork(after_in_child=_DEADLINES.reset)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
