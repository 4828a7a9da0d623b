"""Deterministic result images: colour bands, the prompt, and the variant (4o) or the model (Flux, Market).

The same request always gives the same PNG (or JPEG, or WebP) bytes, so a sha256 recorded when the
task completes matches what a downloader later stores.
"""

from __future__ import annotations

import hashlib
import io
import struct
import textwrap
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

SIZES: dict[str, tuple[int, int]] = {"1:1": (1024, 1024), "3:2": (1536, 1024), "2:3": (1024, 1536)}
# Flux Kontext's aspect ratios, about one megapixel each, in the exact ratio (default 16:9 first).
FLUX_SIZES: dict[str, tuple[int, int]] = {
    "21:9": (1512, 648),
    "16:9": (1344, 756),
    "4:3": (1152, 864),
    "1:1": (1024, 1024),
    "3:4": (864, 1152),
    "9:16": (756, 1344),
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PAD_CHUNK = b"emUz"  # ancillary, private, safe-to-copy: decoders skip it
_BANDS = 6
_CACHE_SIZE = 48

_render_lock = threading.Lock()  # FreeType faces are shared; render one image at a time
_cache: OrderedDict[tuple[str | int, ...], bytes] = OrderedDict()


_Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


@lru_cache(maxsize=8)
def _font(size: int) -> _Font:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ImportError, TypeError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _palette(task_id: str, index: int) -> list[tuple[int, int, int]]:
    digest = hashlib.sha256(f"{task_id}:{index}".encode()).digest()
    return [(digest[3 * i], digest[3 * i + 1], digest[3 * i + 2]) for i in range(_BANDS)]


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font: _Font) -> None:
    draw.text(xy, text, font=font, fill=(255, 255, 255), stroke_width=3, stroke_fill=(0, 0, 0))


def _draw(
    task_id: str,
    index: int,
    title: str,
    text: str,
    footer: str,
    dims: tuple[int, int],
    fmt: str,
    text_scale: int | None = None,
) -> bytes:
    """``text_scale``: the width the lettering is sized for (default the image's width)."""
    width, height = dims
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    band = height // _BANDS + 1
    for i, colour in enumerate(_palette(task_id, index)):
        draw.rectangle((0, i * band, width, (i + 1) * band), fill=colour)
    scale = text_scale or width
    prompt_px = max(28, scale // 24)
    big_px = max(48, scale // 12)
    big, medium, small = _font(big_px), _font(prompt_px), _font(max(20, scale // 48))
    margin = scale // 24
    _label(draw, (margin, margin), title, big)
    chars_per_line = max(16, int((width - 2 * margin) / (prompt_px * 0.52)))
    max_lines = max(3, int((height - 2 * big_px - 3 * margin) / (prompt_px * 1.3)))
    lines = textwrap.wrap(text, width=chars_per_line)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1][:-3] + "..."]
    y = margin + int(big_px * 1.5)
    for line in lines:
        _label(draw, (margin, y), line, medium)
        y += int(prompt_px * 1.3)
    _label(draw, (margin, height - margin * 2), footer, small)
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=90)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=80, method=0)
    else:
        image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _cached(key: tuple[str | int, ...], build: Callable[[], bytes]) -> bytes:
    with _render_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
        data = build()
        _cache[key] = data
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return data


def render_png(task_id: str, index: int, prompt: str, size: str, n_variants: int) -> bytes:
    """The PNG of one 4o result (cached: a small LRU, rendering again gives the same bytes)."""
    return _cached(
        ("4o", task_id, index, prompt, size, n_variants),
        lambda: _draw(
            task_id,
            index,
            f"variant {index + 1} / {n_variants}",
            prompt or "(no prompt: edit of the input images)",
            f"{size}  task {task_id}",
            SIZES[size],
            "png",
        ),
    )


def render_flux(
    task_id: str, prompt: str, model: str, aspect_ratio: str, output_format: str, input_image: str | None
) -> bytes:
    """The JPEG or PNG of a Flux Kontext result, in the aspect ratio asked for (cached like 4o's)."""
    text = f"edit of {input_image}: {prompt}" if input_image else prompt
    return _cached(
        ("flux", task_id, prompt, model, aspect_ratio, output_format, input_image or ""),
        lambda: _draw(
            task_id,
            0,
            model,
            text,
            f"{aspect_ratio} {output_format}  task {task_id}",
            FLUX_SIZES[aspect_ratio],
            output_format,
        ),
    )


def render_market(
    task_id: str, index: int, count: int, model: str, prompt: str, dims: tuple[int, int], fmt: str
) -> bytes:
    """One Market result (``index`` of ``count``): ``dims`` pixels in ``fmt`` (png, jpeg or webp)."""
    width, height = dims
    return _cached(
        ("market", task_id, index, count, model, prompt, width, height, fmt),
        lambda: _draw(
            task_id,
            index,
            f"{model}  {index + 1} / {count}",
            prompt,
            f"{width}x{height} {fmt}  task {task_id}",
            dims,
            fmt,
            text_scale=min(width, 2 * height),
        ),
    )


def padded_length(image: bytes, total: int) -> int:
    """Length of ``padded_chunks(image, total)``: at least ``total``, never less than the image."""
    if not image.startswith(PNG_SIGNATURE):
        return max(total, len(image))
    return max(total, len(image) + 12)  # a PNG gains at least an empty padding chunk


def padded_chunks(image: bytes, total: int) -> Iterator[bytes]:
    """The image grown to ``total`` bytes, still decodable: a PNG chunk, or zeros after a JPEG's end."""
    if image.startswith(PNG_SIGNATURE):
        yield from padded_png_chunks(image, total)
        return
    yield image
    remaining = padded_length(image, total) - len(image)
    zeros = bytes(1 << 20)
    while remaining > 0:
        piece = zeros[: min(len(zeros), remaining)]
        remaining -= len(piece)
        yield piece


def padded_png_chunks(png: bytes, total: int, block: int = 1 << 20) -> Iterator[bytes]:
    """A still-valid PNG grown to ``total`` bytes by a private ancillary chunk before IEND."""
    if not png.endswith(_IEND):
        raise ValueError("not a PNG ending in IEND")
    pad = padded_length(png, total) - len(png) - 12
    yield png[: -len(_IEND)]
    yield struct.pack(">I", pad) + _PAD_CHUNK
    crc = zlib.crc32(_PAD_CHUNK)
    zeros = bytes(block)
    remaining = pad
    while remaining > 0:
        piece = zeros[: min(block, remaining)]
        crc = zlib.crc32(piece, crc)
        remaining -= len(piece)
        yield piece
    yield struct.pack(">I", crc & 0xFFFFFFFF)
    yield _IEND
