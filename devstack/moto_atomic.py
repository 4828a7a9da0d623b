"""Make moto's requests atomic, as AWS's are.

DynamoDB evaluates a conditional write atomically; moto evaluates the condition and applies the
update without a lock, so two threads can both pass `attribute_not_exists(...)`. Deduplication is
exactly what we test under concurrency, so every emulated AWS request runs under one lock, in
process (mock_aws) and in moto_server (a WSGI wrapper) alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

_lock = threading.RLock()
_patched = False


def serialize_in_process_requests() -> None:
    """Under mock_aws: each intercepted botocore request is handled while holding the lock."""
    global _patched
    if _patched:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def atomic(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            return original(self, *args, **kwargs)

    BotocoreStubber.process_request = atomic  # type: ignore[method-assign]
    _patched = True


def atomic_wsgi(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """For moto_server: the whole request, response body included, under the lock."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with _lock:
            return list(app(environ, start_response))

    return application
