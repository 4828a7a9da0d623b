"""Input images: the emulator GETs each URL a task was given, as the platform does, before it "generates".

What a task takes: 4o's ``filesUrl`` items and ``maskUrl``, Flux Kontext's ``inputImage``, a Market
model's image fields. Each is fetched once, when the task completes, through the URL as given (in the
local stack a presigned link to moto's S3), and recorded: the URL, the HTTP status, the sha256 and size
of what came back, its format by magic bytes and its pixel size. How a failure ends the task is the
caller's (``tasks.py``): 4o 451 for an input it could not download or that is not an image, 400 for an
input over 25 MiB or a mask whose size differs from its image; Flux Kontext and the Market 500 with a
message naming the input (their documented codes have no 451).

Only http(s) URLs are fetched, and only loopback hosts unless ``allow_external_inputs`` is set (off,
an input on another host is recorded ``blocked`` and counts as unreachable), so tests never reach out.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from .callbacks import is_loopback_url

# Larger inputs are refused by the platform (4o: 400 over 26,214,400 bytes); we stop reading a little
# beyond that, so a huge body costs the emulator at most this much memory.
MAX_INPUT_BYTES = 26_214_400  # 4o's and Flux Kontext's; a Market field has its own (market_validation)
FETCH_TIMEOUT_SECONDS = 10.0
MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
)


def image_format(head: bytes) -> str | None:
    """png, jpeg or webp by the file's first bytes; None for anything else."""
    for signature, name in MAGIC:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass
class FetchedInput:
    """One input as the emulator fetched it (``ok`` False: why in ``error``)."""

    field: str
    url: str
    ok: bool
    error: str | None = None
    status: int | None = None
    sha256: str | None = None
    bytes: int = 0
    contentType: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    oversize: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pixel_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # any decoder failure means "not an image we can read"
        return None


def fetch_input(
    field: str,
    url: str,
    *,
    allow_external: bool,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    max_bytes: int = MAX_INPUT_BYTES,
) -> FetchedInput:
    """GET one input URL (no redirects followed) and say what came back (over `max_bytes`: oversize)."""
    if urlsplit(url).scheme not in ("http", "https"):
        return FetchedInput(field, url, ok=False, error="not an http(s) URL")
    if not allow_external and not is_loopback_url(url):
        return FetchedInput(field, url, ok=False, error="blocked: input host is not loopback")
    try:
        with (
            httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as client,
            client.stream("GET", url) as answer,
        ):
            content_type = answer.headers.get("Content-Type")
            if answer.status_code != 200:
                return FetchedInput(
                    field, url, ok=False, status=answer.status_code, contentType=content_type,
                    error=f"HTTP {answer.status_code}",
                )  # fmt: skip
            body = bytearray()
            for chunk in answer.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    break
    except httpx.HTTPError as error:
        return FetchedInput(field, url, ok=False, error=f"unreachable: {type(error).__name__}: {error}")
    data = bytes(body)
    fetched = FetchedInput(
        field,
        url,
        ok=True,
        status=200,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        contentType=content_type,
        format=image_format(data[:16]),
        oversize=len(data) > max_bytes,
    )
    if fetched.oversize:
        fetched.ok, fetched.error = False, f"over {max_bytes} bytes"
        return fetched
    size = _pixel_size(data) if fetched.format else None
    if size is None:
        fetched.ok, fetched.error = False, "not an image (PNG, JPEG or WebP)"
        return fetched
    fetched.width, fetched.height = size
    return fetched


def fetch_all(
    urls: list[tuple[str, str]],
    *,
    allow_external: bool,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    byte_limits: Mapping[str, int] | None = None,
) -> list[FetchedInput]:
    """Every (field, url) in order; each is fetched even after one failed, so all are recorded. A field
    in `byte_limits` takes at most that many bytes (else MAX_INPUT_BYTES)."""
    limits = byte_limits or {}
    return [
        fetch_input(
            field,
            url,
            allow_external=allow_external,
            timeout=timeout,
            max_bytes=limits.get(field, MAX_INPUT_BYTES),
        )
        for field, url in urls
    ]
