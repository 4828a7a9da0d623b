"""Chaos for the emulated AWS services: bursts of the errors AWS really returns, injected in front of moto.

A burst fails the next few calls of one operation, more than botocore's retries absorb, so the
product's own recovery (a 5xx the upstream retries, an SQS message retried later, an idempotent
client retry) is what gets tested, not the SDK's.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

SQS_SEND = "sqs:SendMessageBatch"
S3_PUT = "s3:PutObject"
DYNAMODB_WRITE = "dynamodb:UpdateItem"


def _operation(environ: dict[str, Any]) -> str | None:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target == "AmazonSQS.SendMessageBatch":
        return SQS_SEND
    if target == "DynamoDB_20120810.UpdateItem":
        return DYNAMODB_WRITE
    path = environ.get("PATH_INFO", "")
    if environ.get("REQUEST_METHOD") == "PUT" and "/images/" in path and not environ.get("QUERY_STRING"):
        return S3_PUT
    return None


def _error(operation: str) -> tuple[str, list[tuple[str, str]], bytes]:
    if operation == SQS_SEND:
        body = {"__type": "com.amazonaws.sqs#InternalError", "message": "chaos: SQS internal error"}
        return (
            "500 Internal Server Error",
            [("Content-Type", "application/x-amz-json-1.0")],
            json.dumps(body).encode(),
        )
    if operation == DYNAMODB_WRITE:
        body = {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "chaos: throughput exceeded",
        }
        return "400 Bad Request", [("Content-Type", "application/x-amz-json-1.0")], json.dumps(body).encode()
    xml = b"<Error><Code>SlowDown</Code><Message>chaos: please reduce your request rate</Message></Error>"
    return "503 Slow Down", [("Content-Type", "application/xml")], xml


@dataclass
class AwsFaults:
    """Each matching request starts a burst with `probability`; a burst fails `burst` calls in a row."""

    probability: float = 0.03
    burst: int = 5
    operations: tuple[str, ...] = (SQS_SEND, S3_PUT, DYNAMODB_WRITE)
    seed: int = 0
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._remaining: Counter[str] = Counter()
        self._lock = threading.Lock()

    def decide(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes] | None:
        operation = _operation(environ)
        if operation is None or operation not in self.operations:
            return None
        with self._lock:
            if not self._remaining[operation] and self._random.random() < self.probability:
                self._remaining[operation] = self.burst
            if not self._remaining[operation]:
                return None
            self._remaining[operation] -= 1
            self.injected[operation] += 1
        return _error(operation)

    def wrap(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            injected = self.decide(environ)
            if injected is None:
                return app(environ, start_response)
            status, headers, body = injected
            if environ.get("wsgi.input"):
                environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response(status, [*headers, ("Content-Length", str(len(body)))])
            return [body]

        return application
