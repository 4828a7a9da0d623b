"""A tiny real HTTP server on 127.0.0.1 for tests that fetch images (no mock of the network layer)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def png_bytes(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "image/png"
    delay_seconds: float = 0.0  # a slow host: wait this long before answering


@dataclass
class ImageServer:
    origin: str
    routes: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def serve(self, path: str, *replies: Reply) -> str:
        """Answer `path` with the replies in turn (the last one repeats); returns the full URL."""
        self.routes[path] = list(replies)
        return self.origin + path


@contextmanager
def image_server() -> Iterator[ImageServer]:
    state: ImageServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state.requests.append(self.path)
            replies = state.routes.get(path) or [Reply(404, b"not found", "text/plain")]
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
            if reply.delay_seconds:
                time.sleep(reply.delay_seconds)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = ImageServer(origin=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
