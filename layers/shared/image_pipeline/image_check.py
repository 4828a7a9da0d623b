"""Decide whether downloaded bytes are a real, reasonably sized PNG, JPEG or WebP image.

The type comes from the magic bytes only (never from a server's Content-Type header). Pillow is
imported lazily, inside :func:`verify_image`, so importing this module stays cheap on a cold start.

Checks made by :func:`verify_image`, cheapest first:

1. magic bytes must be PNG, JPEG or WebP (``not_image`` otherwise);
2. the canvas size is read from the header and compared with ``max_pixels`` *before* anything is
   decoded or allocated (``too_many_pixels``: a decompression bomb is a tiny file that claims huge
   dimensions). WebP is sized from its own header first because libwebp allocates the canvas as soon
   as Pillow opens the file;
3. a cheap structural end-of-file check (PNG ``IEND`` chunk, JPEG ``EOI`` after the last scan, WebP
   RIFF length) so a body cut short in transit is reported as ``truncated``;
4. Pillow ``Image.open`` restricted to the sniffed format, the size checked again, then ``verify()``
   (``corrupt`` when Pillow rejects the data).
"""

from __future__ import annotations

import io
import struct
import warnings

__all__ = ["ImageCheckError", "sniff_image_type", "verify_image"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_SOI = b"\xff\xd8\xff"

#: sniffed content type -> (extension, Pillow formats allowed to open it)
_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "image/png": ("png", ("PNG",)),
    "image/jpeg": ("jpg", ("JPEG",)),
    "image/webp": ("webp", ("WEBP",)),
}
# jpeg_factory hands back an MPO image for multi-picture JPEGs; still a JPEG file.
_PILLOW_FORMAT_OK = {"image/png": {"PNG"}, "image/jpeg": {"JPEG", "MPO"}, "image/webp": {"WEBP"}}


class ImageCheckError(Exception):
    """The bytes are not an acceptable image.

    ``reason`` is one of ``"not_image"`` (not PNG/JPEG/WebP at all), ``"corrupt"`` (right magic
    bytes but Pillow rejects the data), ``"too_many_pixels"`` (dimensions above the pixel cap:
    decompression bomb) or ``"truncated"`` (the file ends before its format says it should).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sniff_image_type(head: bytes) -> tuple[str, str] | None:
    """Return ``(content_type, extension)`` from the first bytes of a file, or ``None``.

    Recognises PNG, JPEG and WebP only. Needs at most the first 12 bytes.
    """
    if head.startswith(PNG_SIGNATURE):
        return "image/png", "png"
    if head.startswith(_JPEG_SOI):
        return "image/jpeg", "jpg"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def _header_size(content_type: str, body: bytes) -> tuple[int, int] | None:
    """Canvas size straight from the file header, without Pillow; ``None`` when not parseable here."""
    if content_type == "image/png":
        # signature, then the IHDR chunk: length(4) "IHDR" width(4) height(4), big endian
        if len(body) >= 24 and body[12:16] == b"IHDR":
            return struct.unpack(">II", body[16:24])
        return None
    if content_type == "image/webp":
        chunk = body[12:16]
        if chunk == b"VP8X" and len(body) >= 30:
            w = int.from_bytes(body[24:27], "little") + 1
            h = int.from_bytes(body[27:30], "little") + 1
            return w, h
        if chunk == b"VP8 " and len(body) >= 30 and body[23:26] == b"\x9d\x01\x2a":
            w = int.from_bytes(body[26:28], "little") & 0x3FFF
            h = int.from_bytes(body[28:30], "little") & 0x3FFF
            return w, h
        if chunk == b"VP8L" and len(body) >= 25 and body[20] == 0x2F:
            bits = int.from_bytes(body[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return None
    return None  # JPEG: Pillow's open() only walks the markers up to the first scan, no decoding


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageCheckError("corrupt", f"image has invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise ImageCheckError(
            "too_many_pixels",
            f"image dimensions {width}x{height} ({width * height} pixels) exceed the cap of "
            f"{max_pixels} pixels (possible decompression bomb)",
        )


def _check_complete(content_type: str, body: bytes) -> None:
    """Cheap end-of-file checks: catch a body that was cut short in transit."""
    if content_type == "image/png":
        if body.rfind(_PNG_IEND) == -1:
            raise ImageCheckError("truncated", "PNG ends without an IEND chunk (truncated)")
    elif content_type == "image/jpeg":
        last_scan = body.rfind(b"\xff\xda")
        if last_scan == -1 or body.find(b"\xff\xd9", last_scan + 2) == -1:
            raise ImageCheckError(
                "truncated", "JPEG has no end-of-image marker after its last scan (truncated)"
            )
    elif content_type == "image/webp":
        riff_len = int.from_bytes(body[4:8], "little") + 8
        if riff_len > len(body):
            raise ImageCheckError(
                "truncated", f"WebP RIFF header announces {riff_len} bytes but only {len(body)} arrived"
            )


def verify_image(body: bytes, max_pixels: int) -> tuple[str, str, int, int]:
    """Check that ``body`` is a complete PNG/JPEG/WebP of at most ``max_pixels`` pixels.

    Returns ``(content_type, extension, width, height)``; raises :class:`ImageCheckError`.
    Nothing is decoded before the pixel count has been checked.
    """
    sniffed = sniff_image_type(body[:16])
    if sniffed is None:
        raise ImageCheckError("not_image", "content is not a PNG, JPEG or WebP image (magic bytes)")
    content_type, extension = sniffed
    pillow_formats = _FORMATS[content_type][1]

    size = _header_size(content_type, body)
    if size is not None:
        _check_pixels(size[0], size[1], max_pixels)
    elif content_type == "image/png":  # the IHDR chunk must come first: this is not a PNG
        raise ImageCheckError("corrupt", "PNG signature without an IHDR chunk")
    _check_complete(content_type, body)

    from PIL import Image  # lazy: keeps the import cost off the cold start of callers that never verify

    with warnings.catch_warnings():
        # Our own max_pixels is the limit; Pillow's global one would only warn (or be too lax).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(body), formats=list(pillow_formats)) as im:
                width, height = im.size
                fmt = im.format
                _check_pixels(width, height, max_pixels)
                im.verify()
        except ImageCheckError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageCheckError("too_many_pixels", f"image too large to open safely: {exc}") from exc
        except MemoryError as exc:  # pragma: no cover - depends on the machine
            raise ImageCheckError("too_many_pixels", "image needs too much memory to open") from exc
        except Exception as exc:  # Pillow raises SyntaxError, OSError, ValueError, struct.error, EOFError...
            raise ImageCheckError(
                "corrupt", f"{extension.upper()} data rejected by the decoder: {type(exc).__name__}: {exc}"
            ) from exc
    if fmt not in _PILLOW_FORMAT_OK[content_type]:
        raise ImageCheckError("corrupt", f"decoder saw {fmt} but the magic bytes say {content_type}")
    return content_type, extension, width, height
