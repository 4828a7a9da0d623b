"""A socketserver run on a background thread: what the front door and the local moto share."""

from __future__ import annotations

import socketserver
import threading


class BackgroundServer:
    def __init__(self, server: socketserver.BaseServer, name: str) -> None:
        self._server = server
        # shutdown() waits for serve_forever's next look at its flag: every 0.05 s, not every 0.5 s.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]  # type: ignore[index, str-unpack]
        return f"http://{host!s}:{port}"

    def start_serving(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        started = self._thread.ident is not None
        if started:  # shutdown() waits for serve_forever: forever, if it never ran
            self._server.shutdown()
        self._server.server_close()
        if started:
            self._thread.join(timeout=10)
