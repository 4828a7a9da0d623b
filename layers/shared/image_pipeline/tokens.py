"""Our task ids, per-task callback capabilities and the platform's optional HMAC signature.

Each task gets a random 256-bit token carried in its callBackUrl. We store only its SHA-256,
so a leaked table does not leak working callback URLs, and compare in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

TOKEN_BYTES = 32
UNIX_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also accepts "²"


OUR_TASK_ID = re.compile(r"[0-9a-f]{32}")


def new_task_id() -> str:
    """Our id of a task: 128 random bits, opaque, URL-safe and unguessable."""
    return secrets.token_hex(16)


def is_our_task_id(value: str) -> bool:
    """Ours are 32 hex digits; anything else was never minted (and must not reach DynamoDB's key limits)."""
    return OUR_TASK_ID.fullmatch(value) is not None


def new_callback_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.encode())


def webhook_signature(key: str, task_id: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(key, taskId + "." + timestamp)), as the platform signs its callbacks."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def check_webhook_signature(
    key: str,
    task_id: str,
    timestamp: str | None,
    signature: str | None,
    *,
    window_seconds: int,
    now: float | None = None,
) -> str | None:
    """None when the headers prove the callback; otherwise what is wrong with them."""
    if not timestamp or not signature:
        return "missing X-Webhook-Timestamp or X-Webhook-Signature header"
    if not UNIX_SECONDS.fullmatch(timestamp):
        return "X-Webhook-Timestamp is not Unix seconds"
    skew = abs((time.time() if now is None else now) - int(timestamp))
    if skew > window_seconds:
        return f"X-Webhook-Timestamp is {int(skew)} s away from now (window {window_seconds} s)"
    if not hmac.compare_digest(
        webhook_signature(key, task_id, timestamp).encode(), signature.strip().encode()
    ):
        return "X-Webhook-Signature does not match"
    return None
