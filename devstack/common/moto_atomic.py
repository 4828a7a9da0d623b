"""Make moto's DynamoDB requests atomic, as DynamoDB's are.

DynamoDB evaluates a conditional write atomically; moto evaluates the condition and applies the
update without a lock, so two threads can both pass `attribute_not_exists(...)`. Deduplication is
exactly what we test under concurrency, so every emulated DynamoDB request runs under one lock, in
process (mock_aws) and in moto_server (a WSGI wrapper) alike. Only DynamoDB: SQS long polls sleep
inside the request, and holding the lock through them would stall every other call.
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


def serialize_in_process_requests() -> None:
    """Under mock_aws: each intercepted DynamoDB request is handled while holding the lock."""
    global _patched
    if _patched:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def atomic(self: Any, request: Any) -> Any:
        if not _is_dynamodb(request.headers.get("X-Amz-Target")):
            return original(self, request)
        with _lock:
            return original(self, request)

    BotocoreStubber.process_request = atomic  # type: ignore[method-assign]
    _patched = True


def atomic_wsgi(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """For moto_server: each DynamoDB request, response body included, under the lock."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not _is_dynamodb(environ.get("HTTP_X_AMZ_TARGET")):
            return app(environ, start_response)
        with _lock:
            return list(app(environ, start_response))

    return application
