"""image_check: type from magic bytes, pixel cap before decoding, truncation and corruption."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_pipeline.image_check import ImageCheckError, sniff_image_type, verify_image
from PIL import Image

MAX = 50_000_000


def _encode(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **options: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 90) if mode == "RGB" else 0).save(out, fmt, **options)
    return out.getvalue()


PNG = _encode("PNG")
JPEG = _encode("JPEG", quality=80)
WEBP_LOSSY = _encode("WEBP", quality=80)
WEBP_LOSSLESS = _encode("WEBP", lossless=True)
WEBP_ALPHA = _encode("WEBP", mode="RGBA")  # VP8X with an ALPH chunk


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width x height`` (a decompression bomb header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def webp_vp8x_claiming(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(JPEG)
    sof = data.find(b"\xff\xc0")
    assert sof != -1
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# ------------------------------------------------------------------------------------------------ sniff


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PNG, ("image/png", "png")),
        (JPEG, ("image/jpeg", "jpg")),
        (WEBP_LOSSY, ("image/webp", "webp")),
        (WEBP_LOSSLESS[:12], ("image/webp", "webp")),
        (b"<!doctype html><html>", None),
        (b"GIF89a\x01\x00\x01\x00", None),
        (b"BM" + b"\x00" * 30, None),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"\x89PNG", None),
        (b"", None),
    ],
    ids=["png", "jpeg", "webp", "webp-12-bytes", "html", "gif", "bmp", "riff-wave", "short-png", "empty"],
)
def test_sniff_image_type(head: bytes, expected: tuple[str, str] | None) -> None:
    assert sniff_image_type(head) == expected


@given(st.binary(max_size=64))
def test_sniff_never_raises(data: bytes) -> None:
    result = sniff_image_type(data)
    assert result is None or result[0] in {"image/png", "image/jpeg", "image/webp"}


# ----------------------------------------------------------------------------------------------- verify


@pytest.mark.parametrize(
    ("body", "content_type", "extension"),
    [
        (PNG, "image/png", "png"),
        (JPEG, "image/jpeg", "jpg"),
        (WEBP_LOSSY, "image/webp", "webp"),
        (WEBP_LOSSLESS, "image/webp", "webp"),
        (WEBP_ALPHA, "image/webp", "webp"),
    ],
    ids=["png", "jpeg", "webp-lossy", "webp-lossless", "webp-vp8x"],
)
def test_verify_accepts_real_images(body: bytes, content_type: str, extension: str) -> None:
    assert verify_image(body, MAX) == (content_type, extension, 64, 48)


def test_pixel_cap_is_inclusive() -> None:
    assert verify_image(PNG, 64 * 48)[2:] == (64, 48)
    with pytest.raises(ImageCheckError) as err:
        verify_image(PNG, 64 * 48 - 1)
    assert err.value.reason == "too_many_pixels"


@pytest.mark.parametrize(
    "body",
    [
        png_claiming(100_000, 100_000),
        png_claiming(8_000, 8_000),  # 64 M: over our cap, under Pillow's own bomb limit
        webp_vp8x_claiming(16_383, 16_383),  # libwebp would allocate a 1 GB canvas on open
        jpeg_claiming(60_000, 60_000),
        jpeg_claiming(8_000, 8_000),
    ],
    ids=["png-10G", "png-64M", "webp-268M", "jpeg-3.6G", "jpeg-64M"],
)
def test_decompression_bombs_rejected_before_decoding(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(body) < 2_000

    def no_decoding(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("must not decode or verify an image over the pixel cap")

    monkeypatch.setattr(Image.Image, "verify", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(ImageCheckError) as err:
        verify_image(body, MAX)
    assert err.value.reason == "too_many_pixels"


def test_real_large_png_over_custom_cap() -> None:
    body = _encode("PNG", size=(2_000, 2_000), mode="L")  # a few KB, 4 M pixels
    assert len(body) < 50_000
    with pytest.raises(ImageCheckError) as err:
        verify_image(body, 1_000_000)
    assert err.value.reason == "too_many_pixels"
    assert "2000x2000" in str(err.value)


@pytest.mark.parametrize(
    "body",
    [PNG[: len(PNG) // 2], PNG[:-12], JPEG[: len(JPEG) - 40], WEBP_LOSSY[:-10], WEBP_LOSSLESS[:30]],
    ids=["png-half", "png-no-iend", "jpeg-cut", "webp-lossy-cut", "webp-lossless-cut"],
)
def test_truncated_images(body: bytes) -> None:
    with pytest.raises(ImageCheckError) as err:
        verify_image(body, MAX)
    assert err.value.reason == "truncated"


def _bad_crc_png() -> bytes:
    data = bytearray(PNG)
    idat = data.find(b"IDAT")
    data[idat + 6] ^= 0xFF  # flip a byte of the compressed data: the chunk CRC no longer matches
    return bytes(data)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<!doctype html><html><body>not an image</body></html>", "not_image"),
        (b"", "not_image"),
        (b"GIF89a" + b"\x00" * 100, "not_image"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 20 + b"\x00\x00\x00\x00IEND\xaeB`\x82", "corrupt"),
        (_bad_crc_png(), "corrupt"),
        (b"\xff\xd8\xff" + b"\x00" * 50 + b"\xff\xda\x00\x02\xff\xd9", "corrupt"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00abcd", "corrupt"),
        (png_claiming(0, 10), "corrupt"),
    ],
    ids=[
        "html",
        "empty",
        "gif",
        "png-garbage",
        "png-bad-crc",
        "jpeg-garbage",
        "webp-garbage",
        "png-zero-width",
    ],
)
def test_not_images_and_corrupt_images(body: bytes, reason: str) -> None:
    with pytest.raises(ImageCheckError) as err:
        verify_image(body, MAX)
    assert err.value.reason == reason


_MAGICS = st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x01\x00\x00WEBP", b""])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=_MAGICS,
    base=st.sampled_from([PNG, JPEG, WEBP_LOSSY, b""]),
    cut=st.integers(min_value=0, max_value=2_000),
    noise=st.binary(max_size=200),
)
def test_verify_only_raises_image_check_error(prefix: bytes, base: bytes, cut: int, noise: bytes) -> None:
    body = prefix + base[cut:] + noise if prefix else base[:cut] + noise
    try:
        content_type, extension, width, height = verify_image(body, MAX)
    except ImageCheckError as err:
        assert err.reason in {"not_image", "corrupt", "too_many_pixels", "truncated"}
    else:
        assert sniff_image_type(body) == (content_type, extension)
        assert 0 < width * height <= MAX
