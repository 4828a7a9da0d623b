"""Make moto's DynamoDB requests and S3's conditional writes atomic, as AWS's are.

DynamoDB evaluates a conditional write atomically; moto evaluates the condition and applies the
update without a lock, so two threads can both pass `attribute_not_exists(...)`. Deduplication is
exactly what we test under concurrency, so every emulated DynamoDB request runs under one lock, in
process (mock_aws) and in moto_server (a WSGI wrapper) alike; so does every S3 PUT with If-None-Match
or If-Match (the downloader's one copy per image). Not SQS: its long polls sleep inside the request,
and holding the lock through them would stall every other call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

_lock = threading.RLock()
_patched = False
DYNAMODB_TARGET_PREFIX = "DynamoDB_"


def _is_dynamodb(target: str | bytes | None) -> bool:
    if isinstance(target, bytes):
        target = target.decode(errors="replace")
    return bool(target) and str(target).startswith(DYNAMODB_TARGET_PREFIX)


def _needs_lock(method: str | None, target: str | bytes | None, conditional: bool) -> bool:
    """A DynamoDB request, or a conditional S3 PUT (If-None-Match / If-Match)."""
    return _is_dynamodb(target) or (method == "PUT" and conditional)


def serialize_in_process_requests() -> None:
    """Under mock_aws: each intercepted DynamoDB request and conditional S3 PUT holds the lock."""
    global _patched
    if _patched:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def atomic(self: Any, request: Any) -> Any:
        headers = request.headers
        conditional = "If-None-Match" in headers or "If-Match" in headers
        if not _needs_lock(request.method, headers.get("X-Amz-Target"), conditional):
            return original(self, request)
        with _lock:
            return original(self, request)

    BotocoreStubber.process_request = atomic  # type: ignore[method-assign]
    _patched = True


def atomic_wsgi(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """For moto_server: each DynamoDB request and conditional S3 PUT (with its response) under the lock."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        conditional = "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ
        if not _needs_lock(environ.get("REQUEST_METHOD"), environ.get("HTTP_X_AMZ_TARGET"), conditional):
            return app(environ, start_response)
        with _lock:
            return list(app(environ, start_response))

    return application
