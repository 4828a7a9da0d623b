"""A tiny real HTTP server on 127.0.0.1 for tests that fetch images (no mock of the network layer), on
tests/loopback_server.py."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.loopback_server import Exchange, LoopbackServer


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
    def handle(exchange: Exchange) -> None:
        path = exchange.path.split("?", 1)[0]
        state.requests.append(exchange.path)
        replies = state.routes.get(path) or [Reply(404, b"not found", "text/plain")]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if reply.delay_seconds:
            time.sleep(reply.delay_seconds)
        exchange.send_response(reply.status)
        exchange.send_header("Content-Type", reply.content_type)
        exchange.send_header("Content-Length", str(len(reply.body)))
        exchange.end_headers()
        exchange.wfile.write(reply.body)

    with LoopbackServer(handle, methods=("GET",)) as server:
        state = ImageServer(origin=server.origin)
        yield state


def unreachable_url(path: str = "/gone.png") -> str:
    """A loopback URL nothing listens on any more (an image server started and stopped)."""
    with image_server() as gone:
        url = gone.serve(path, Reply(200, png_bytes()))
    return url
