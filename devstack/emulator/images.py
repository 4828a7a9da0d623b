"""Deterministic result images: flat colour bands plus the prompt and the variant index.

The same (task, index, prompt, size) always gives the same PNG bytes, so a sha256 recorded when
the task completes matches what a downloader later stores.
"""

from __future__ import annotations

import hashlib
import io
import struct
import textwrap
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

SIZES: dict[str, tuple[int, int]] = {"1:1": (1024, 1024), "3:2": (1536, 1024), "2:3": (1024, 1536)}
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PAD_CHUNK = b"emUz"  # ancillary, private, safe-to-copy: decoders skip it
_BANDS = 6
_CACHE_SIZE = 48

_render_lock = threading.Lock()  # FreeType faces are shared; render one image at a time
_cache: OrderedDict[tuple[str, int, str, str, int], bytes] = OrderedDict()


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


def _draw(task_id: str, index: int, prompt: str, size: str, n_variants: int) -> bytes:
    width, height = SIZES[size]
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    band = height // _BANDS + 1
    for i, colour in enumerate(_palette(task_id, index)):
        draw.rectangle((0, i * band, width, (i + 1) * band), fill=colour)
    prompt_px = max(28, width // 24)
    big_px = max(48, width // 12)
    big, medium, small = _font(big_px), _font(prompt_px), _font(max(20, width // 48))
    margin = width // 24
    _label(draw, (margin, margin), f"variant {index + 1} / {n_variants}", big)
    chars_per_line = max(16, int((width - 2 * margin) / (prompt_px * 0.52)))
    max_lines = max(3, int((height - 2 * big_px - 3 * margin) / (prompt_px * 1.3)))
    lines = textwrap.wrap(prompt or "(no prompt: edit of the input images)", width=chars_per_line)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1][:-3] + "..."]
    y = margin + int(big_px * 1.5)
    for line in lines:
        _label(draw, (margin, y), line, medium)
        y += int(prompt_px * 1.3)
    _label(draw, (margin, height - margin * 2), f"{size}  task {task_id}", small)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def render_png(task_id: str, index: int, prompt: str, size: str, n_variants: int) -> bytes:
    """The PNG for one result (cached: a small LRU, rendering again gives the same bytes)."""
    key = (task_id, index, prompt, size, n_variants)
    with _render_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
        data = _draw(task_id, index, prompt, size, n_variants)
        _cache[key] = data
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return data


def padded_length(png: bytes, total: int) -> int:
    """Length of ``padded_png_chunks(png, total)``: at least ``total``, never less than a real PNG."""
    minimum = len(png) + 12  # an empty padding chunk
    return max(total, minimum)


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
