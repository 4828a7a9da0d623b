"""Standard Webhooks signatures: ``whsec_`` secrets, and the three headers of a signed delivery.

https://www.standardwebhooks.com: ``webhook-signature`` is
``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``, one per secret separated by spaces, so a
receiver that knows either secret of a rotation verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _random
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
_MIN_KEY_BYTES = 24  # the spec's range for a secret's key
_MAX_KEY_BYTES = 64
_NEW_KEY_BYTES = 32
_SEPARATORS = re.compile(r"[\s,]+")


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(_NEW_KEY_BYTES)).decode("ascii")


def parse_secrets(text: str) -> tuple[str, ...]:
    """The ``whsec_`` secrets in ``text`` (separated by whitespace or commas), duplicates dropped.

    Raises ValueError naming which secret is wrong and why, never echoing it.
    """
    if not isinstance(text, str):
        raise TypeError("signing secrets must be given as a string")
    found: list[str] = []
    items = [item for item in _SEPARATORS.split(text) if item]
    if not items:
        raise ValueError("no signing secret given: expected one or more whsec_... values")
    for number, item in enumerate(items, start=1):
        _key(item, f"signing secret {number} of {len(items)}")
        if item not in found:
            found.append(item)
    return tuple(found)


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers for ``body``.

    ``timestamp`` is unix seconds; each secret in ``secrets`` adds one ``v1,`` signature.
    """
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of whsec_ strings, not one string")
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    if not msg_id or not msg_id.isascii() or not msg_id.isprintable() or " " in msg_id:
        raise ValueError("msg_id must be non-empty printable ASCII without spaces")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError("timestamp must be a non-negative integer (unix seconds)")
    if not isinstance(body, bytes | bytearray):
        raise TypeError("body must be bytes")
    keys = [_key(secret, f"signing secret {i} of {len(secrets)}") for i, secret in enumerate(secrets, 1)]
    signed = f"{msg_id}.{timestamp}.".encode() + bytes(body)
    signatures = (base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(f"v1,{signature}" for signature in signatures),
    }


def _key(secret: str, name: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError naming ``name`` (never the value)."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"{name} does not start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:  # padding is optional, as in the reference libraries
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not valid base64 after {SECRET_PREFIX!r}") from None
    if not _MIN_KEY_BYTES <= len(key) <= _MAX_KEY_BYTES:
        raise ValueError(
            f"{name} decodes to {len(key)} bytes; {_MIN_KEY_BYTES} to {_MAX_KEY_BYTES} are required"
        )
    return key
